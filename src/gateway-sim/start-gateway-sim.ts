import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../infra/logger.ts';
import { createExpressServer } from '../infra/express-server.ts';
import { GatewayLedger } from './gateway-ledger.ts';
import { createGatewaySimApp, type GatewaySimState } from './gateway-sim-app.ts';

export interface RunningGatewaySim {
  server: Server;
  port: number;
  url: string;
  state: GatewaySimState;
  close: () => Promise<void>;
}

/** Starts the gateway simulator on `port` (0 = ephemeral) on 127.0.0.1 unless `host` says otherwise. */
export async function startGatewaySim(
  options: { port: number; host?: string },
  logger?: Logger,
): Promise<RunningGatewaySim> {
  const state: GatewaySimState = {
    ledger: new GatewayLedger(),
    control: { latencyMs: 0, errorRate: 0, outage: false },
    requests: { total: 0, charges: 0, byKey: new Map() },
  };
  const server = createExpressServer(createGatewaySimApp(state));
  server.keepAliveTimeout = 5000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(options.port, host, resolve));
  const port = (server.address() as AddressInfo).port;
  logger?.info({ port, host }, 'gateway simulator listening');
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    state,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
