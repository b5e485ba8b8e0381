import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyEntries, planTransfer, type WalletState } from '../src/domain/ledger.ts';
import { parseAmountMinor } from '../src/domain/money.ts';
import { isUuid, logicalShardOf, newIdInShard, newTimeOrderedId } from '../src/domain/ids.ts';

const wallet = (id: string, balance: bigint, extra: Partial<WalletState> = {}): WalletState => ({
  id,
  kind: 'customer',
  currency: 'USD',
  status: 'active',
  balanceMinor: balance,
  heldMinor: 0n,
  ...extra,
});

describe('money', () => {
  it('parses only canonical decimal strings in (0, 10^15]', () => {
    expect(parseAmountMinor('1')).toBe(1n);
    expect(parseAmountMinor('1000000000000000')).toBe(10n ** 15n);
    for (const bad of ['0', '-1', '1.0', '1e3', '01', ' 1', '1000000000000001', '', '0x10', '١']) {
      expect(parseAmountMinor(bad)).toBeUndefined();
    }
  });
});

describe('ids', () => {
  it('puts any shard in the first byte of a valid version 8 UUID; ids of a shard grow with time', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 2 ** 40 - 2 }), (shard, ms) => {
        const id = newIdInShard(shard, ms);
        expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        expect(isUuid(id)).toBe(true);
        expect(logicalShardOf(id)).toBe(shard);
        expect(newIdInShard(shard, ms + 1) > id).toBe(true);
      }),
    );
  });

  it('makes version 7 UUIDs that sort by their millisecond, and never repeats', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 47 }), (ms) => {
        const id = newTimeOrderedId(ms);
        expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        expect(newTimeOrderedId(ms + 1) > id).toBe(true);
      }),
    );
    const many = Array.from({ length: 20_000 }, () => newTimeOrderedId(0));
    expect(new Set(many).size).toBe(many.length);
  });
});

describe('planTransfer', () => {
  it('over random transfer sequences conserves money and never overdraws', () => {
    fc.assert(
      fc.property(
        fc.array(fc.bigInt({ min: 0n, max: 10_000n }), { minLength: 2, maxLength: 6 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.bigInt({ min: 1n, max: 5_000n })), { maxLength: 60 }),
        (initial, transfers) => {
          let state = new Map(initial.map((b, i) => [`w${i}`, wallet(`w${i}`, b)]));
          const total = initial.reduce((a, b) => a + b, 0n);
          for (const [f, to, amount] of transfers) {
            const from = state.get(`w${f % initial.length}`)!;
            const dest = state.get(`w${to % initial.length}`)!;
            const plan = planTransfer({ from, to: dest, amountMinor: amount, currency: 'USD' });
            if (plan.ok) {
              expect(plan.entries.reduce((a, e) => a + e.amountMinor, 0n)).toBe(0n);
              state = applyEntries(state, plan.entries);
            } else {
              const expected = from.id === dest.id ? 'same_wallet' : 'insufficient_funds';
              expect(plan.code).toBe(expected);
              if (expected === 'insufficient_funds') expect(from.balanceMinor).toBeLessThan(amount);
            }
            for (const w of state.values()) expect(w.balanceMinor >= 0n).toBe(true);
          }
          expect([...state.values()].reduce((a, w) => a + w.balanceMinor, 0n)).toBe(total);
        },
      ),
    );
  });

  it('checks wallets in a stable order of reasons', () => {
    const a = wallet('a', 100n);
    const b = wallet('b', 0n);
    const code = (p: ReturnType<typeof planTransfer>) => (p.ok ? 'ok' : p.code);
    expect(code(planTransfer({ from: a, to: undefined, amountMinor: 1n, currency: 'USD' }))).toBe('wallet_not_found');
    expect(code(planTransfer({ from: a, to: { ...b, currency: 'EUR' }, amountMinor: 1n, currency: 'USD' }))).toBe('currency_mismatch');
    expect(code(planTransfer({ from: { ...a, status: 'frozen' }, to: b, amountMinor: 1n, currency: 'USD' }))).toBe('wallet_frozen');
    expect(code(planTransfer({ from: { ...a, heldMinor: 60n }, to: b, amountMinor: 50n, currency: 'USD' }))).toBe('insufficient_funds');
    expect(code(planTransfer({ from: a, to: { ...b, balanceMinor: 2n ** 63n - 1n }, amountMinor: 1n, currency: 'USD' }))).toBe(
      'balance_limit_exceeded',
    );
    expect(code(planTransfer({ from: a, to: b, amountMinor: 100n, currency: 'USD' }))).toBe('ok');
  });
});
