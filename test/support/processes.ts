import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

/** A TCP port that was free a moment ago (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Waits until http://127.0.0.1:port/healthz answers 200, or the child exits. */
export async function waitHealthy(port: number, child: ChildProcess, timeoutMs = 30_000): Promise<string> {
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${baseUrl}/healthz`)).status === 200) return baseUrl;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no /healthz on ${port} after ${timeoutMs} ms`);
}

export interface RedisServer {
  port: number;
  url: string;
  child: ChildProcess;
}

/** Starts a private `redis-server` (no persistence) on `port` (a free one by default) and waits until it answers. */
export async function startRedisServer(port?: number): Promise<RedisServer> {
  const p = port ?? (await freePort());
  const child = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const probe = new Redis({ port: p, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {}); // refused until the server is up
  try {
    for (let i = 0; i < 100; i++) {
      if (child.exitCode !== null) break;
      if (await probe.connect().then(() => true, () => false)) return { port: p, url: `redis://127.0.0.1:${p}`, child };
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    probe.disconnect();
  }
  child.kill('SIGKILL');
  throw new Error(`private redis-server on ${p} did not start`);
}

/**
 * Starts librdkafka's mock cluster (Debian's kcat, 3 brokers) as a private Kafka and returns
 * the process and its bootstrap list. It lives as long as the process; SIGSTOP/SIGCONT pause it.
 */
export async function startMockKafka(): Promise<{ child: ChildProcess; brokers: string }> {
  const child = spawn('kcat', ['-q', '-b', '127.0.0.1:1', '-C', '-t', 'boot', '-X', 'test.mock.num.brokers=3'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const brokers = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kcat mock did not report its address: ${err}`)), 10_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      const m = /(?:bootstrap\.servers=|replaced with )(\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', () => reject(new Error(`kcat exited: ${err}`)));
  });
  return { child, brokers };
}
