import { sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';

/**
 * Constants that decide whether a partial index applies are written into the statement, not
 * bound: statements run often become prepared statements (prepared-statements.ts), and a
 * prepared statement's generic plan cannot prove `status IN ($1, $2)` implies an index's
 * `status IN ('pending', 'processing')`, so it would scan the table instead.
 */
export const OPEN_STATUS = sql.raw(`IN ('pending', 'processing')`);

/** One bound parameter, whatever the value (an array stays one array parameter, not a list). */
export const param = (value: unknown): SQL => sql`${sql.param(value)}`;

/**
 * One bound parameter holding an array literal (`{a,b,NULL}`) of values that never need quoting
 * in one: uuids and integers the caller took from the database or made itself, never client
 * input. node-postgres quotes and escapes every element of an array it binds (two regex passes
 * and a concatenation each); the group commit binds ~11 such elements per transfer.
 */
export const plainArray = (values: readonly (string | bigint | null)[]): SQL =>
  sql`${sql.param(`{${values.map((v) => (v === null ? 'NULL' : String(v))).join(',')}}`)}`;

/**
 * `column = ANY($1::uuid[])`: one parameter however many ids. Cheaper to build and plan than
 * `IN ($1, ..., $n)` on the group-commit and batched-accept paths.
 */
export const anyId = (column: AnyPgColumn, ids: readonly string[]): SQL => sql`${column} = ANY(${sql.param(ids)}::uuid[])`;
