import { sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';

/** One bound parameter, whatever the value (an array stays one array parameter, not a list). */
export const param = (value: unknown): SQL => sql`${sql.param(value)}`;

/**
 * `column = ANY($1::uuid[])`: one parameter however many ids. Cheaper to build and plan than
 * `IN ($1, ..., $n)` on the group-commit and batched-accept paths.
 */
export const anyId = (column: AnyPgColumn, ids: readonly string[]): SQL => sql`${column} = ANY(${sql.param(ids)}::uuid[])`;
