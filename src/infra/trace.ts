import { randomFillSync } from 'node:crypto';

/** W3C Trace Context `traceparent`: version 00, 16-byte trace id, 8-byte parent id, flags. */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The header if it is a valid version-00 traceparent (not all-zero ids), else undefined. */
export function parseTraceparent(header: string | undefined): string | undefined {
  const m = header ? TRACEPARENT.exec(header.trim().toLowerCase()) : null;
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return undefined;
  return m[0];
}

// Random hex drawn from one pooled 4 KiB buffer (one getrandom call per ~170 requests, not two per request).
const POOL = Buffer.alloc(16 * 256);
let poolOffset = POOL.length;
function randomHex(bytes: 8 | 16): string {
  if (poolOffset + bytes > POOL.length) {
    randomFillSync(POOL);
    poolOffset = 0;
  }
  poolOffset += bytes;
  return POOL.toString('hex', poolOffset - bytes, poolOffset);
}

/**
 * This hop's traceparent: the caller's trace id with a new span id, or a new trace when the
 * caller sent none (sampled flag set, so downstream tracers keep it).
 */
export function childTraceparent(parent: string | undefined): string {
  const valid = parseTraceparent(parent);
  const traceId = valid ? valid.slice(3, 35) : randomHex(16);
  const flags = valid ? valid.slice(53, 55) : '01';
  return `00-${traceId}-${randomHex(8)}-${flags}`;
}

/** The trace id of a traceparent, for log lines (undefined when absent or invalid). */
export function traceIdOf(traceparent: string | null | undefined): string | undefined {
  return parseTraceparent(traceparent ?? undefined)?.slice(3, 35);
}
