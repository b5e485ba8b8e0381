/**
 * src/events/kafkajs-pooled-encoder.ts makes kafkajs's protocol encoder take its buffers from
 * Node's pool without zero-filling them. The bytes it produces must be exactly kafkajs's own:
 * produce requests encoded here, with the patch, are compared with the same requests encoded by
 * an unpatched kafkajs in a child process.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { expect, it } from 'vitest';
import '../src/events/kafka.ts';
import { encodeProduceRequests } from './support/encode-produce.ts';

const require = createRequire(import.meta.url);
const FIXTURE = new URL('./support/encode-produce.ts', import.meta.url).pathname;

it('kafkajs encodes the same bytes with pooled buffers as without', async () => {
  const unpatched = JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', FIXTURE], { encoding: 'utf8', maxBuffer: 64 << 20 })) as string[];
  // Every buffer the encoder takes comes filled with 0xee, so a byte it did not write would show.
  const allocUnsafe = Buffer.allocUnsafe;
  Buffer.allocUnsafe = (size: number) => allocUnsafe(size).fill(0xee);
  let patched: string[];
  try {
    patched = await encodeProduceRequests();
  } finally {
    Buffer.allocUnsafe = allocUnsafe;
  }
  expect(unpatched).toHaveLength(2);
  expect(unpatched[0]!.length).toBeGreaterThan(100_000);
  expect(patched).toEqual(unpatched);
});

it('the patch is in effect: an encoder starts empty and grows from the pool', () => {
  const Encoder = require('kafkajs/src/protocol/encoder') as new () => { buf: Buffer; writeInt32(v: number): unknown; buffer: Buffer };
  const encoder = new Encoder();
  expect(encoder.buf.length).toBe(0);
  encoder.writeInt32(7);
  expect(encoder.buf.length).toBe(512);
  expect(encoder.buf.buffer.byteLength).toBeGreaterThan(512); // a slice of the shared pool
  expect([...encoder.buffer]).toEqual([0, 0, 0, 7]);
});
