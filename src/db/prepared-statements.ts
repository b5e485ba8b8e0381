/**
 * Server-side prepared statements for the statements a process runs again and again.
 *
 * node-postgres parses every parameterized statement anew unless it is given a name; Postgres
 * then parses, analyzes and rewrites the whole text on every call. The hot statements here are
 * long (the batched accept and the group commit are one multi-CTE statement each) and their
 * text does not change with the batch size (arrays are one parameter each), so parsing them
 * costs Postgres more than running them for small batches. Like JDBC's `prepareThreshold`, a
 * text seen `threshold` times gets a name, for every connection of the pool; each connection then
 * parses it once and afterwards only binds and executes it (node-postgres keeps track per connection).
 *
 * Bounded: at most `maxStatements` texts are ever named per pool (each named statement holds
 * memory in every backend that ran it), and the table that counts sightings is cleared when it
 * grows past a few thousand texts, so statements that vary (an IN list per length) cannot grow
 * it without end. Statements without parameters keep the simple protocol.
 */
import type pg from 'pg';

export interface PreparedStatementOptions {
  /** Distinct texts named per pool; 0 turns preparing off. */
  maxStatements: number;
  /** Runs of a text before it is prepared. */
  threshold: number;
}

const SIGHTINGS_LIMIT = 4096;

export class StatementNames {
  private readonly names = new Map<string, string>();
  private readonly sightings = new Map<string, number>();

  constructor(private readonly options: PreparedStatementOptions) {}

  /** The name `text` runs under, or undefined while it has not earned one. */
  nameOf(text: string): string | undefined {
    const name = this.names.get(text);
    if (name !== undefined || this.names.size >= this.options.maxStatements) return name;
    const seen = (this.sightings.get(text) ?? 0) + 1;
    if (seen < this.options.threshold) {
      if (this.sightings.size >= SIGHTINGS_LIMIT) this.sightings.clear();
      this.sightings.set(text, seen);
      return undefined;
    }
    this.sightings.delete(text);
    const named = `ll_${this.names.size + 1}`;
    this.names.set(text, named);
    return named;
  }

  get size(): number {
    return this.names.size;
  }
}

type QueryConfigLike = { text?: unknown; name?: unknown; values?: unknown; submit?: unknown };

/**
 * Makes `client` run the statements `names` has named as prepared statements. Wraps this
 * client's `query` only (the pool's 'connect' event hands every new connection here).
 */
export function prepareStatementsOn(client: pg.PoolClient, names: StatementNames): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  const wrapped = (config: unknown, ...rest: unknown[]): unknown => {
    if (config !== null && typeof config === 'object') {
      const c = config as QueryConfigLike;
      const values = Array.isArray(rest[0]) ? rest[0] : c.values;
      // Plain query configs only: a Submittable (a cursor, a stream) keeps its own identity.
      if (typeof c.text === 'string' && c.name === undefined && c.submit === undefined && Array.isArray(values) && values.length > 0) {
        const name = names.nameOf(c.text);
        if (name !== undefined) return query({ ...c, name }, ...rest);
      }
    }
    return query(config, ...rest);
  };
  client.query = wrapped as typeof client.query;
}
