import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import type { Logger } from './logger.ts';

/**
 * Runs this process at niceness `nice` (0 leaves it as started): the settlement processes (worker,
 * relay) call it so that on a machine they share with the API, the API's requests get
 * a core first and settlement takes what is left. Alone on a machine it changes nothing (niceness
 * only orders processes that want the same core). Linux keeps a niceness per thread and a thread
 * inherits its creator's, so every thread running now is set, and the ones started later follow.
 * Never raises a priority (that would need privileges); a failure is logged, not fatal.
 */
export function runAtNiceness(nice: number, logger: Logger): void {
  if (nice <= 0) return;
  let threads: number[];
  try {
    threads = readdirSync('/proc/self/task').map(Number);
  } catch {
    threads = [0]; // not Linux: the process (0 = this one)
  }
  try {
    for (const tid of threads) if (getPriority(tid) < nice) setPriority(tid, nice);
    logger.info({ nice }, 'running at a lower CPU priority than the API');
  } catch (err) {
    logger.warn({ err, nice }, 'could not lower the CPU priority');
  }
}
