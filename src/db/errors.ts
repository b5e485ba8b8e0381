/** SQLSTATE of a pg error, also when drizzle wraps it (DrizzleQueryError keeps it on `cause`). */
export function sqlState(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 3 && e && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export const isUniqueViolation = (err: unknown) => sqlState(err) === '23505';

/** Deadlock or serialization failure: the transaction did nothing and may simply run again. */
export const isRetryableConflict = (err: unknown) => {
  const state = sqlState(err);
  return state === '40P01' || state === '40001';
};

/** Runs `fn` again on deadlock/serialization failure, with jittered backoff, up to `attempts`. */
export async function retryOnConflict<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isRetryableConflict(err) || attempt >= attempts) throw err;
      await new Promise((r) => setTimeout(r, Math.random() * 20 * 2 ** attempt));
    }
  }
}
