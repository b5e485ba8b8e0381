/**
 * Group commit for concurrent callers: items submitted for the same key (a database) are
 * gathered and handed to `run` together, so N callers share one round trip or transaction.
 *
 * Batches form by themselves under load: at most `maxInFlight` batches per key run at once, and
 * whatever arrives meanwhile waits for the next one (as Postgres groups WAL flushes). An idle
 * key waits `lingerMs` after its first item for company; a batch never exceeds `maxSize`.
 * `run` answers each item on its own (a value or an error), so one bad item fails alone.
 */
export type ItemResult<O> = { ok: true; value: O } | { ok: false; error: unknown };

export interface MicroBatcherOptions {
  /**
   * How long the first item of an idle key waits for others. 0: only for what arrives in the same
   * turn of the event loop (the batch goes in its check phase, after its I/O; no timer).
   */
  lingerMs: number;
  /** Largest batch handed to `run`. */
  maxSize: number;
  /** Batches of one key running at once. */
  maxInFlight: number;
  /** Called with the size of every batch (metrics). */
  onBatch?: (size: number) => void;
}

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

interface KeyState<I, O> {
  queue: Pending<I, O>[];
  inFlight: number;
  /** Cancels the pending flush of an idle key's first items (a timer, or an immediate). */
  cancelFlush: (() => void) | undefined;
}

export class MicroBatcher<K, I, O> {
  private readonly keys = new Map<K, KeyState<I, O>>();

  constructor(
    private readonly options: MicroBatcherOptions,
    private readonly run: (key: K, items: I[]) => Promise<ItemResult<O>[]>,
  ) {}

  submit(key: K, item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      let state = this.keys.get(key);
      if (!state) {
        state = { queue: [], inFlight: 0, cancelFlush: undefined };
        this.keys.set(key, state);
      }
      state.queue.push({ item, resolve, reject });
      this.schedule(key, state);
    });
  }

  /** Resolves once nothing is waiting or running (graceful shutdown), or after `timeoutMs`. */
  async drain(timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  }

  /** Items waiting plus batches running, over all keys: 0 when idle (for shutdown). */
  get size(): number {
    let n = 0;
    for (const s of this.keys.values()) n += s.queue.length + s.inFlight;
    return n;
  }

  private schedule(key: K, state: KeyState<I, O>): void {
    if (state.inFlight >= this.options.maxInFlight || state.queue.length === 0) return;
    if (state.queue.length >= this.options.maxSize) {
      this.flush(key, state);
      return;
    }
    if (state.cancelFlush) return;
    const go = () => {
      state.cancelFlush = undefined;
      this.flush(key, state);
    };
    if (this.options.lingerMs > 0) {
      const timer = setTimeout(go, this.options.lingerMs);
      state.cancelFlush = () => clearTimeout(timer);
    } else {
      const immediate = setImmediate(go);
      state.cancelFlush = () => clearImmediate(immediate);
    }
  }

  private flush(key: K, state: KeyState<I, O>): void {
    state.cancelFlush?.();
    state.cancelFlush = undefined;
    if (state.inFlight >= this.options.maxInFlight || state.queue.length === 0) return;
    const batch = state.queue.splice(0, this.options.maxSize);
    state.inFlight++;
    this.options.onBatch?.(batch.length);
    this.run(
      key,
      batch.map((p) => p.item),
    )
      .then(
        (results) => {
          batch.forEach((p, i) => {
            const r = results[i];
            if (!r) p.reject(new Error('batch returned no result for an item'));
            else if (r.ok) p.resolve(r.value);
            else p.reject(r.error);
          });
        },
        (error: unknown) => {
          for (const p of batch) p.reject(error);
        },
      )
      .finally(() => {
        state.inFlight--;
        // Whatever queued up while this batch ran has waited long enough: go at once.
        if (state.queue.length > 0 && state.inFlight < this.options.maxInFlight) this.flush(key, state);
        else if (state.queue.length === 0 && state.inFlight === 0) this.keys.delete(key);
      });
  }
}
