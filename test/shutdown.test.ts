import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, waitForLog, type TestEnv } from './support/env.ts';

let t: TestEnv;
beforeAll(async () => {
  t = await createTestEnv({ worker: false });
});
afterAll(() => t?.close());

async function exitCode(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return code;
}

it('a worker told SIGTERM under load finishes its in-flight jobs and exits 0', async () => {
  const key = await t.api.adminKey();
  const worker = t.spawnWorker({ WORKER_CONCURRENCY: '4', LOG_LEVEL: 'info' });
  await waitForLog(worker, 'worker started');
  const [a, b] = await Promise.all([t.api.wallet(key), t.api.wallet(key)]);
  await t.api.waitTerminal(key, (await t.api.fund(key, a, '100000')).body.id);
  const ops = await Promise.all(Array.from({ length: 200 }, () => t.api.transfer(key, a, b, '1')));
  worker.kill('SIGTERM');
  expect(await exitCode(worker, 20_000)).toBe(0);

  const queue = new Queue('settlement', { connection: t.redis, prefix: t.config.REDIS_PREFIX });
  expect(await queue.getActiveCount()).toBe(0); // nothing left half-done or locked
  await queue.close();
  // What it did not take is still queued, and a new worker settles all of it.
  t.startWorker();
  const done = await Promise.all(ops.map((r) => t.api.waitTerminal(key, r.body.id)));
  expect(done.every((o) => o.status === 'succeeded')).toBe(true);
  expect((await t.api.request('GET', `/v1/wallets/${b}`, { key })).body.balance).toBe('200');
});

it('api and relay exit 0 on SIGTERM', async () => {
  const api = t.spawnProcess('api', { PORT: '0', LOG_LEVEL: 'info' });
  const relay = t.spawnProcess('relay', { LOG_LEVEL: 'info' });
  await Promise.all([waitForLog(api, 'api listening'), waitForLog(relay, 'relay active')]);
  relay.kill('SIGTERM');
  api.kill('SIGTERM');
  expect(await exitCode(relay, 15_000)).toBe(0);
  expect(await exitCode(api, 15_000)).toBe(0);
});
