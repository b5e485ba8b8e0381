/**
 * The batcher under group commit and batched accept: what it gathers into one batch, when it
 * lets a batch go, and that each item gets its own answer.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { MicroBatcher, type ItemResult } from '../src/infra/micro-batcher.ts';

/** A batcher whose batches are recorded and held until `release()`. */
function recording(options: { lingerMs: number; maxSize?: number; maxInFlight?: number }) {
  const batches: number[][] = [];
  const releases: (() => void)[] = [];
  const batcher = new MicroBatcher<'k', number, number>(
    { lingerMs: options.lingerMs, maxSize: options.maxSize ?? 100, maxInFlight: options.maxInFlight ?? 1 },
    async (_key, items) => {
      batches.push(items);
      await new Promise<void>((r) => releases.push(r));
      return items.map((n): ItemResult<number> => (n < 0 ? { ok: false, error: new Error(`bad ${n}`) } : { ok: true, value: n * 10 }));
    },
  );
  const release = () => releases.splice(0).forEach((r) => r());
  return { batcher, batches, release };
}

describe('MicroBatcher', () => {
  it('linger 0: what is submitted in one turn of the event loop goes together, at once, with no timer', async () => {
    const { batcher, batches, release } = recording({ lingerMs: 0 });
    const answers = [1, 2, 3].map((n) => batcher.submit('k', n));
    expect(batches).toEqual([]); // not inside the turn that submitted them
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[1, 2, 3]]);
    release();
    expect(await Promise.all(answers)).toEqual([10, 20, 30]);
  });

  it('linger > 0: the first item waits that long for company', async () => {
    const { batcher, batches, release } = recording({ lingerMs: 30 });
    const first = batcher.submit('k', 1);
    await sleep(5);
    expect(batches).toEqual([]);
    const second = batcher.submit('k', 2);
    await sleep(60);
    expect(batches).toEqual([[1, 2]]);
    release();
    expect(await Promise.all([first, second])).toEqual([10, 20]);
  });

  it('one batch in flight: what arrives meanwhile waits and goes as the next batch, at once', async () => {
    const { batcher, batches, release } = recording({ lingerMs: 0 });
    const first = batcher.submit('k', 1);
    await new Promise((r) => setImmediate(r));
    const rest = [2, 3, 4].map((n) => batcher.submit('k', n));
    await sleep(10);
    expect(batches).toEqual([[1]]); // 2..4 wait for the batch in flight
    release();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[1], [2, 3, 4]]);
    release();
    expect(await Promise.all(rest)).toEqual([20, 30, 40]);
    expect(batcher.size).toBe(0);
  });

  it('a full batch goes without waiting for its linger, and never exceeds maxSize', async () => {
    const { batcher, batches, release } = recording({ lingerMs: 10_000, maxSize: 2, maxInFlight: 2 });
    const answers = [1, 2, 3].map((n) => batcher.submit('k', n));
    await sleep(5);
    expect(batches).toEqual([[1, 2]]); // 3 waits for its linger (or company)
    const fourth = batcher.submit('k', 4);
    await sleep(5);
    expect(batches).toEqual([[1, 2], [3, 4]]);
    release();
    expect(await Promise.all([...answers, fourth])).toEqual([10, 20, 30, 40]);
  });

  it('each item gets its own answer: one failed item fails alone', async () => {
    const { batcher, release } = recording({ lingerMs: 0 });
    const answers = [1, -2, 3].map((n) => batcher.submit('k', n).then((v) => ({ v }), (e: Error) => ({ e: e.message })));
    await new Promise((r) => setImmediate(r));
    release();
    expect(await Promise.all(answers)).toEqual([{ v: 10 }, { e: 'bad -2' }, { v: 30 }]);
  });
});
