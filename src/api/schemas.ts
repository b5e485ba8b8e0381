/**
 * Request schemas: they validate requests and generate the OpenAPI document, so the two
 * cannot drift apart.
 */
import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { isCurrency, parseAmountMinor } from '../domain/money.ts';

extendZodWithOpenApi(z);

/** No control characters (C0, DEL, C1); any other Unicode is fine in free text. */
const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => !/[\u0000-\u001f\u007f-\u009f]/.test(s), 'must not contain control characters');

export const Uuid = z.uuid({ message: 'must be a UUID' }).transform((s) => s.toLowerCase());

export const Amount = z
  .string({ message: 'must be a decimal string of minor units' })
  .refine((s) => parseAmountMinor(s) !== undefined, 'must be a decimal string of minor units from 1 to 10^15')
  .openapi({ example: '1050', description: 'Integer minor units as a decimal string, 1 to 10^15' });

export const Currency = z
  .string()
  .refine(isCurrency, 'must be an upper-case ISO 4217 currency code')
  .openapi({ example: 'USD' });

export const CreateApiKeyBody = z.strictObject({
  name: text(100),
  rateLimits: z
    .strictObject({
      createWallet: z.int().min(1).max(1_000_000_000).optional(),
      fund: z.int().min(1).max(1_000_000_000).optional(),
      transfer: z.int().min(1).max(1_000_000_000).optional(),
      read: z.int().min(1).max(1_000_000_000).optional(),
      webhooks: z.int().min(1).max(1_000_000_000).optional(),
    })
    .optional(),
});

export const CreateWalletBody = z.strictObject({
  currency: Currency,
  reference: text(255).optional(),
});

export const FundBody = z.strictObject({
  amount: Amount,
  paymentMethod: z
    .string()
    .regex(/^pm_[A-Za-z0-9_]{1,100}$/, 'must look like pm_…')
    .optional(),
});

export const TransferBody = z.strictObject({
  fromWalletId: Uuid,
  toWalletId: Uuid,
  amount: Amount,
  reference: text(255).optional(),
});

/** One item of POST /v1/transfers/batch: a transfer with its own idempotency key. */
export const BatchTransferItem = TransferBody.extend({
  idempotencyKey: z.string().regex(/^[\x20-\x7e]{1,255}$/, 'must be 1 to 255 printable ASCII characters'),
});

/** Most transfers in one POST /v1/transfers/batch. */
export const MAX_TRANSFER_BATCH = 1000;

export const TransferBatchBody = z
  .strictObject({
    transfers: z.array(BatchTransferItem).min(1).max(MAX_TRANSFER_BATCH),
  })
  .superRefine((body, ctx) => {
    const seen = new Map<string, number>();
    body.transfers.forEach((t, i) => {
      const first = seen.get(t.idempotencyKey);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['transfers', i, 'idempotencyKey'], message: `repeats the key of transfers.${first}` });
      } else seen.set(t.idempotencyKey, i);
    });
  });

export const WalletIdParams = z.object({ id: Uuid });
export const OperationIdParams = z.object({ id: Uuid });

export const EntriesQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,40}$/, 'must be a cursor returned by a previous page')
    .optional(),
});

/**
 * An RFC 3339 date-time as a Date, within years 0001–9999 UTC: the syntax also admits year 0000
 * and offsets that carry 9999-12-31 into year 10000, which Postgres refuses (a 500, not a 400).
 */
export const Instant = z
  // RFC 3339 allows a lower-case `t` and `z`; the check below knows only upper case.
  .preprocess((v) => (typeof v === 'string' ? v.toUpperCase() : v), z.iso.datetime({ offset: true, message: 'must be an RFC 3339 date-time' }))
  .transform((s) => new Date(s))
  .refine((d) => d.getUTCFullYear() >= 1 && d.getUTCFullYear() <= 9999, 'must be between 0001-01-01 and 9999-12-31 (UTC)')
  .openapi({ type: 'string', format: 'date-time', example: '2026-11-28T12:00:00Z' });

export const BalanceQuery = z.strictObject({
  at: Instant.optional(),
});

export const OperationQuery = z.strictObject({
  wait: z.coerce.number().int().min(0).max(30).default(0),
});

/** Idempotency-Key: 1–255 printable ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x20-\x7e]{1,255}$/;
