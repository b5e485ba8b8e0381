import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.ts';
import { register } from './metrics.ts';

export interface MetricsServer {
  port: number;
  close: () => Promise<void>;
}

/**
 * A bare HTTP server for processes without an API (worker, relay, consumers): `GET /metrics`
 * (Prometheus text) and `GET /healthz`. `port` 0 picks a free port (logged). If the port is
 * taken, the process keeps settling money without metrics and logs an error: a scrape gap
 * alerts (absent series), a stopped worker would not.
 */
export async function startMetricsServer(port: number, logger: Logger): Promise<MetricsServer | undefined> {
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      register.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': register.contentType });
          res.end(text);
        },
        (err: unknown) => {
          logger.warn({ err }, 'metrics collection failed');
          res.writeHead(500).end();
        },
      );
      return;
    }
    if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    res.writeHead(404).end();
  });
  server.keepAliveTimeout = 5_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '0.0.0.0', () => resolve());
    });
  } catch (err) {
    logger.error({ err, port }, 'metrics server could not listen; running without /metrics');
    return undefined;
  }
  const bound = (server.address() as AddressInfo).port;
  logger.info({ metricsPort: bound }, 'metrics listening');
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
