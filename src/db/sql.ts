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
 * `column = ANY($1::uuid[])`: one parameter however many ids. Cheaper to build and plan than
 * `IN ($1, ..., $n)` on the group-commit and batched-accept paths.
 */
export const anyId = (column: AnyPgColumn, ids: readonly string[]): SQL => sql`${column} = ANY(${sql.param(ids)}::uuid[])`;
