import { and, desc, eq, lt, lte, sql } from 'drizzle-orm';
import type { Db } from '../client.ts';
import { ledgerEntries, outbox, wallets } from '../schema.ts';
import { outboxEvent } from '../../events/outbox-event.ts';

export type WalletRow = typeof wallets.$inferSelect;
export type EntryRow = typeof ledgerEntries.$inferSelect;

export interface WalletView {
  id: string;
  currency: string;
  balance: string;
  available: string;
  status: 'active' | 'frozen';
  reference?: string;
  createdAt: string;
  updatedAt: string;
}

export function walletView(w: WalletRow): WalletView {
  return {
    id: w.id,
    currency: w.currency,
    balance: w.balance.toString(),
    available: (w.balance - w.held).toString(),
    status: w.status,
    ...(w.reference !== null ? { reference: w.reference } : {}),
    createdAt: w.createdAt.toISOString(),
    updatedAt: w.updatedAt.toISOString(),
  };
}

/** Inserts a customer wallet and its `wallet.created` event in one transaction. */
export async function createWallet(
  db: Db,
  input: { id: string; clientId: string; currency: string; reference: string | null },
): Promise<WalletRow> {
  return db.transaction(async (tx) => {
    const [row] = await tx.insert(wallets).values({ ...input, kind: 'customer' }).returning();
    if (!row) throw new Error('wallet insert returned nothing');
    await tx.insert(outbox).values(outboxEvent('wallet.created', row.id, { ...walletView(row), clientId: row.clientId }));
    return row;
  });
}

/** A customer wallet, only if it belongs to the client (another client's wallet is "not found"). */
export async function findClientWallet(db: Db, clientId: string, walletId: string): Promise<WalletRow | undefined> {
  const [row] = await db
    .select()
    .from(wallets)
    .where(and(eq(wallets.id, walletId), eq(wallets.clientId, clientId), eq(wallets.kind, 'customer')));
  return row;
}

/** Entries of a wallet, newest first, after the cursor (an entry seq). */
export async function listEntries(
  db: Db,
  walletId: string,
  limit: number,
  beforeSeq?: bigint,
): Promise<EntryRow[]> {
  return db
    .select()
    .from(ledgerEntries)
    .where(
      beforeSeq === undefined
        ? eq(ledgerEntries.walletId, walletId)
        : and(eq(ledgerEntries.walletId, walletId), lt(ledgerEntries.seq, beforeSeq)),
    )
    .orderBy(desc(ledgerEntries.seq))
    .limit(limit);
}

/** A wallet's settled balance at an instant, summed from its entries (the ledger is the log). */
export async function balanceAt(db: Db, walletId: string, at: Date): Promise<bigint> {
  const [row] = await db
    .select({ sum: sql<string>`COALESCE(SUM(${ledgerEntries.amount}), 0)::text` })
    .from(ledgerEntries)
    .where(and(eq(ledgerEntries.walletId, walletId), lte(ledgerEntries.createdAt, at)));
  return BigInt(row?.sum ?? '0');
}
