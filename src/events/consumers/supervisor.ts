/**
 * Keeps one consumer running for its process: starts it (the broker may be away at start-up:
 * it keeps trying, 0.5 s to 10 s apart), and after a crash kafkajs does not recover from,
 * closes it and starts it afresh from its committed offsets, after a pause that doubles with
 * each crash within 5 minutes of the last (1 s to 1 min), so a message that crashes it every
 * time is retried, not spun on. Steps run one after another (a crash reported while a start is
 * still joining waits for that start), and a restart replaces only the consumer that crashed.
 */
import type { Logger } from '../../infra/logger.ts';
import { sleep } from '../../infra/sleep.ts';

export interface Running {
  close(): Promise<void>;
}

export interface SupervisorTiming {
  startDelayMs: { first: number; max: number };
  restartDelayMs: { first: number; max: number };
  /** A crash this long after the last one starts the restart pause over at its first value. */
  crashMemoryMs: number;
}

export const SUPERVISOR_TIMING: SupervisorTiming = {
  startDelayMs: { first: 500, max: 10_000 },
  restartDelayMs: { first: 1000, max: 60_000 },
  crashMemoryMs: 5 * 60_000,
};

export interface Supervisor {
  /** Settles when the first start succeeded (or the supervisor was stopped before). */
  started: Promise<void>;
  /** Ends the attempts and pauses, waits for a step in progress, and closes the consumer. */
  stop(): Promise<void>;
}

export function superviseConsumer(
  start: (onFatal: () => void) => Promise<Running>,
  logger: Logger,
  timing: SupervisorTiming = SUPERVISOR_TIMING,
): Supervisor {
  let running: Running | undefined;
  const stopped = new AbortController();
  let restartDelayMs = 0;
  let lastCrash = Number.NEGATIVE_INFINITY;
  let steps: Promise<void> = Promise.resolve();
  const enqueue = (step: () => Promise<void>) => (steps = steps.then(step));

  async function startUntilRunning(): Promise<void> {
    for (let delayMs = timing.startDelayMs.first; !running && !stopped.signal.aborted; delayMs = Math.min(delayMs * 2, timing.startDelayMs.max)) {
      // A restart is for the consumer that crashed: a report of one already replaced (late, or twice) is ignored.
      let instance: Running | undefined;
      try {
        instance = await start(() => void enqueue(() => restart(instance)));
        running = instance;
      } catch (err) {
        logger.warn({ err, delayMs }, 'consumer could not start; retrying');
        await sleep(delayMs, stopped.signal);
      }
    }
  }

  async function restart(crashed: Running | undefined): Promise<void> {
    if (stopped.signal.aborted || crashed === undefined || crashed !== running) return;
    const now = Date.now();
    restartDelayMs = now - lastCrash > timing.crashMemoryMs ? timing.restartDelayMs.first : Math.min(restartDelayMs * 2, timing.restartDelayMs.max);
    lastCrash = now;
    running = undefined;
    await crashed.close().catch((err: unknown) => logger.warn({ err }, 'closing the crashed consumer failed'));
    logger.warn({ delayMs: restartDelayMs }, 'restarting the consumer after its crash');
    await sleep(restartDelayMs, stopped.signal);
    await startUntilRunning();
  }

  const started = enqueue(startUntilRunning);
  return {
    started,
    async stop() {
      stopped.abort();
      await steps; // a start or restart in progress
      await running?.close();
      running = undefined;
    },
  };
}
