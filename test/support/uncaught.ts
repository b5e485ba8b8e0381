/**
 * Runs `fn` and returns the exceptions nothing caught while it ran (and `settleMs` after it, for
 * callbacks it left queued): a library that throws outside any promise would end a process.
 */
export async function uncaughtDuring(fn: () => Promise<void>, settleMs = 50): Promise<unknown[]> {
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  try {
    await fn();
    await new Promise((r) => setTimeout(r, settleMs));
  } finally {
    process.off('uncaughtException', onUncaught);
  }
  return uncaught;
}
