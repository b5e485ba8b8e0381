/**
 * A fix for kafkajs 2.2.4 (the latest release): every broker connection that has had a response
 * spins a 1 ms timer for as long as it lives. `fulfillRequest` always calls
 * `scheduleCheckPendingRequests`, which, with nothing pending and no throttle, arms
 * `setTimeout(check, throttledUntil - now)`: a negative delay, run after 1 ms, whose check
 * schedules the next one (kafkajs issues #1556 and #1704; the fix in PR #1667 is unreleased).
 * On a 2-core machine the relay woke ~1,000 times a second for nothing, and every wake-up of
 * an idle core costs the other processes.
 *
 * With nothing pending and no throttle there is nothing to check later: a request pushed from
 * then on is sent at once or, when it must wait, is queued by `push`, which schedules the check
 * itself. Everything else keeps kafkajs's own behaviour.
 */
import { createRequire } from 'node:module';

interface RequestQueue {
  pending: unknown[];
  throttledUntil: number;
  scheduleCheckPendingRequests(): void;
}

const PATCHED = Symbol.for('ledgerline.kafkajs-idle-timer');

export function stopIdleRequestQueueTimer(prototype: RequestQueue & { [PATCHED]?: true }): void {
  if (prototype[PATCHED]) return;
  const schedule = prototype.scheduleCheckPendingRequests;
  prototype.scheduleCheckPendingRequests = function (this: RequestQueue) {
    if (this.pending.length === 0 && this.throttledUntil <= Date.now()) return;
    schedule.call(this);
  };
  prototype[PATCHED] = true;
}

const require = createRequire(import.meta.url);
stopIdleRequestQueueTimer((require('kafkajs/src/network/requestQueue') as { prototype: RequestQueue }).prototype);
