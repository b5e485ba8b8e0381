/** Largest amount accepted for one operation, in minor units (API.md: ≤ 10^15). */
export const MAX_AMOUNT_MINOR = 10n ** 15n;

const DIGITS = /^[1-9][0-9]{0,15}$/;

/**
 * Parses a decimal string of minor units ("1050") into a bigint in (0, 10^15].
 * Returns undefined for anything else: signs, decimals, exponents, leading zeros, whitespace.
 */
export function parseAmountMinor(text: string): bigint | undefined {
  if (!DIGITS.test(text)) return undefined;
  const value = BigInt(text);
  return value <= MAX_AMOUNT_MINOR ? value : undefined;
}

const CURRENCIES = new Set(Intl.supportedValuesOf('currency'));

/** True for an upper-case ISO 4217 code the runtime knows. */
export function isCurrency(code: string): boolean {
  return /^[A-Z]{3}$/.test(code) && CURRENCIES.has(code);
}
