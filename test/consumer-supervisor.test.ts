/**
 * The consumer process's supervisor (src/events/consumers/supervisor.ts): start-up retries, the
 * restart after a crash kafkajs does not recover from, its growing pause, and a stop that ends
 * a pause early. The consumer is a stand-in; timings are shortened.
 */
import { describe, expect, it } from 'vitest';
import type { Logger } from '../src/infra/logger.ts';
import { superviseConsumer, type SupervisorTiming } from '../src/events/consumers/supervisor.ts';

const timing: SupervisorTiming = { startDelayMs: { first: 10, max: 40 }, restartDelayMs: { first: 50, max: 200 }, crashMemoryMs: 60_000 };

/** A logger that keeps the restart pauses it reports. */
function recordingLogger() {
  const pauses: number[] = [];
  const logger = {
    warn: (fields: { delayMs?: number }, message: string) => {
      if (message.startsWith('restarting')) pauses.push(fields.delayMs!);
    },
  } as unknown as Logger;
  return { logger, pauses };
}

/** A stand-in consumer: fails its first `failures` starts, then runs until closed. */
function fakeConsumer(failures = 0) {
  const state = { starts: 0, running: 0, closes: 0, crash: undefined as (() => void) | undefined };
  const start = async (onFatal: () => void) => {
    state.starts++;
    if (state.starts <= failures) throw new Error('broker away');
    state.running++;
    state.crash = onFatal;
    return {
      close: async () => {
        state.closes++;
        state.running--;
      },
    };
  };
  return { state, start };
}

describe('consumer supervisor', () => {
  it('keeps trying to start while the broker is away', async () => {
    const { state, start } = fakeConsumer(3);
    const supervisor = superviseConsumer(start, recordingLogger().logger, timing);
    await supervisor.started;
    expect(state).toMatchObject({ starts: 4, running: 1 });
    await supervisor.stop();
    expect(state).toMatchObject({ running: 0, closes: 1 });
  });

  it('after a crash closes the consumer and starts a new one, pausing longer for each crash in a row', async () => {
    const { state, start } = fakeConsumer();
    const { logger, pauses } = recordingLogger();
    const supervisor = superviseConsumer(start, logger, timing);
    await supervisor.started;
    for (let crash = 1; crash <= 4; crash++) {
      state.crash!();
      await expect.poll(() => state.starts, { timeout: 2000 }).toBe(crash + 1);
      expect(state.running).toBe(1); // the crashed one was closed before the new one started
    }
    expect(state.closes).toBe(4);
    expect(pauses).toEqual([50, 100, 200, 200]); // doubles, up to its maximum
    await supervisor.stop();
    expect(state.running).toBe(0);
  });

  it('a stop during the pause after a crash ends it without starting again', async () => {
    const { state, start } = fakeConsumer();
    const supervisor = superviseConsumer(start, recordingLogger().logger, { ...timing, restartDelayMs: { first: 60_000, max: 60_000 } });
    await supervisor.started;
    state.crash!();
    await expect.poll(() => state.closes, { timeout: 2000 }).toBe(1);
    const stoppedAt = Date.now();
    await supervisor.stop();
    expect(Date.now() - stoppedAt).toBeLessThan(1000);
    expect(state).toMatchObject({ starts: 1, running: 0 });
  });

  it('a crash reported while its start is still joining restarts once that start returns', async () => {
    let release!: () => void;
    const joined = new Promise<void>((r) => (release = r));
    const { state, start } = fakeConsumer();
    const supervisor = superviseConsumer(
      async (onFatal) => {
        const running = await start(onFatal);
        if (state.starts === 1) {
          onFatal(); // crashed while joining
          await joined;
        }
        return running;
      },
      recordingLogger().logger,
      timing,
    );
    await new Promise((r) => setTimeout(r, 20));
    release();
    await expect.poll(() => state.starts, { timeout: 2000 }).toBe(2);
    expect(state).toMatchObject({ running: 1, closes: 1 }); // the one that crashed was closed, once its start returned
    await supervisor.stop();
  });

  it('a crash reported twice, or by a consumer already replaced, restarts nothing more', async () => {
    const { state, start } = fakeConsumer();
    const { logger, pauses } = recordingLogger();
    const supervisor = superviseConsumer(start, logger, timing);
    await supervisor.started;
    const first = state.crash!;
    first();
    first(); // the same crash, reported again
    await expect.poll(() => state.starts, { timeout: 2000 }).toBe(2);
    first(); // late, from the consumer already replaced
    await new Promise((r) => setTimeout(r, 150)); // longer than any pause it could cause
    expect(state).toMatchObject({ starts: 2, running: 1, closes: 1 });
    expect(pauses).toEqual([50]);
    await supervisor.stop();
  });
});
