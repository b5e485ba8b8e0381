import type { Redis } from 'ioredis';
import type { Logger } from '../infra/logger.ts';

export const operationSettledChannel = (prefix: string) => `${prefix}:operation-settled`;

/**
 * Wakes long-polling requests when a worker announces that operations settled (Redis
 * pub/sub). A notice may be lost, so callers also re-read on a short timer.
 */
export class OperationWaiter {
  private readonly waiting = new Map<string, Set<() => void>>();

  constructor(
    private readonly subscriber: Redis,
    private readonly channel: string,
    logger: Logger,
  ) {
    // A notice names one operation, or several separated by commas (a settled batch).
    subscriber.on('message', (_channel: string, message: string) => {
      for (const operationId of message.split(',')) {
        const set = this.waiting.get(operationId);
        if (!set) continue;
        this.waiting.delete(operationId);
        for (const wake of set) wake();
      }
    });
    subscriber.subscribe(channel).catch((err: unknown) => logger.warn({ err }, 'cannot subscribe to settlements'));
  }

  /** Resolves when the operation is announced, after `timeoutMs`, or when `signal` aborts. */
  wait(operationId: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiting.get(operationId);
      if (!set) {
        set = new Set();
        this.waiting.set(operationId, set);
      }
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        const current = this.waiting.get(operationId);
        current?.delete(done);
        if (current && current.size === 0) this.waiting.delete(operationId);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done);
      set.add(done);
    });
  }

  async close(): Promise<void> {
    for (const set of this.waiting.values()) for (const wake of set) wake();
    await this.subscriber.quit().catch(() => this.subscriber.disconnect());
  }
}

