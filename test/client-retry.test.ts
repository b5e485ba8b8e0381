import { describe, expect, it } from 'vitest';
import { createLedgerlineClient, isSafeToResend, LedgerlineError } from '../src/client/ledgerline-client.ts';

const WALLET = '0190a7a4-8d1e-7c3b-9d2e-0123456789ab';
const OTHER = '0190a7a4-8d1e-7c3b-9d2e-0123456789ac';

/** A fetch that fails the first `failures` calls with `error`, then answers `answer`; records what was sent. */
function flakyFetch(failures: number, error: Error = new TypeError('fetch failed'), answer = () => Response.json({ id: 'op' }, { status: 202 })) {
  const sent: { method: string; path: string; body: string; key: string | null }[] = [];
  const fetch = async (request: Request): Promise<Response> => {
    sent.push({ method: request.method, path: new URL(request.url).pathname, body: await request.text(), key: request.headers.get('idempotency-key') });
    if (sent.length <= failures) throw error;
    return answer();
  };
  return { fetch, sent };
}

const client = (fetch: (r: Request) => Promise<Response>, retries?: { attempts?: number; baseDelayMs?: number } | false) =>
  createLedgerlineClient({ baseUrl: 'http://ledger.test', apiKey: 'k', fetch, retries: retries ?? { baseDelayMs: 1 } });

describe('client transport retries', () => {
  it('resends a transfer that got no answer, with the same body and idempotency key', async () => {
    const f = flakyFetch(2);
    const { data } = await client(f.fetch).transfers.create({ fromWalletId: WALLET, toWalletId: OTHER, amount: '5' }, { idempotencyKey: 'key-1' });
    expect(data).toEqual({ id: 'op' });
    expect(f.sent).toHaveLength(3);
    expect(new Set(f.sent.map((s) => `${s.key} ${s.body}`)).size).toBe(1);
    expect(f.sent[0]!.key).toBe('key-1');
    expect(JSON.parse(f.sent[0]!.body)).toMatchObject({ amount: '5' });
  });

  it('resends reads and transfer batches', async () => {
    const read = flakyFetch(1, undefined, () => Response.json({ id: WALLET }));
    await client(read.fetch).wallets.get(WALLET);
    expect(read.sent.map((s) => s.method)).toEqual(['GET', 'GET']);
    const batch = flakyFetch(1);
    await client(batch.fetch).transfers.batch({ transfers: [{ idempotencyKey: 'k1', fromWalletId: WALLET, toWalletId: OTHER, amount: '1' }] });
    expect(batch.sent).toHaveLength(2);
  });

  it('does not resend a write without idempotency keys (wallet creation)', async () => {
    const f = flakyFetch(1);
    await expect(client(f.fetch).wallets.create({ currency: 'USD' })).rejects.toThrow('fetch failed');
    expect(f.sent).toHaveLength(1);
  });

  it('gives up after `attempts` and throws the last error', async () => {
    const f = flakyFetch(10);
    await expect(client(f.fetch, { attempts: 2, baseDelayMs: 1 }).operations.get(WALLET)).rejects.toThrow('fetch failed');
    expect(f.sent).toHaveLength(2);
  });

  it('does not resend an aborted request, an error that is not a network error, nor when retries are off', async () => {
    const timeout = new DOMException('timed out', 'TimeoutError');
    const aborted = flakyFetch(1, timeout as unknown as Error);
    await expect(client(aborted.fetch).operations.get(WALLET)).rejects.toThrow('timed out');
    expect(aborted.sent).toHaveLength(1);
    const bug = flakyFetch(1, new RangeError('not a network error'));
    await expect(client(bug.fetch).operations.get(WALLET)).rejects.toThrow('not a network error');
    expect(bug.sent).toHaveLength(1);
    const off = flakyFetch(1);
    await expect(client(off.fetch, false).operations.get(WALLET)).rejects.toThrow('fetch failed');
    expect(off.sent).toHaveLength(1);
  });

  it('never resends an answered request, 5xx included', async () => {
    const problem = { type: 'about:blank', title: 'unavailable', status: 503, code: 'unavailable', detail: 'down' };
    const f = flakyFetch(0, undefined, () => Response.json(problem, { status: 503 }));
    const err = await client(f.fetch).operations.get(WALLET).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LedgerlineError);
    expect((err as LedgerlineError).status).toBe(503);
    expect(f.sent).toHaveLength(1);
  });

  it('decides what is safe to resend from the method, the idempotency key and the route', () => {
    const req = (method: string, path: string, headers: Record<string, string> = {}) => new Request(`http://x${path}`, { method, headers });
    expect(isSafeToResend(req('GET', '/v1/wallets/x'))).toBe(true);
    expect(isSafeToResend(req('POST', '/v1/transfers', { 'idempotency-key': 'k' }))).toBe(true);
    expect(isSafeToResend(req('POST', '/v1/transfers/batch'))).toBe(true);
    expect(isSafeToResend(req('POST', '/v1/transfers'))).toBe(false);
    expect(isSafeToResend(req('POST', '/v1/wallets'))).toBe(false);
    expect(isSafeToResend(req('POST', '/admin/api-keys'))).toBe(false);
  });
});
