/**
 * A speed-up for kafkajs 2.2.4 (the latest release): its protocol `Encoder` starts every
 * instance with `Buffer.alloc(512)` and grows with `Buffer.alloc` too. A produced record takes
 * one encoder for itself and one per header (nine for our CloudEvents records), and each such
 * zero-filled buffer is a fresh ArrayBuffer outside V8's heap: a CPU profile of the encoding of
 * our relay's batches put a quarter of it in that allocation alone.
 *
 * Here an encoder starts empty and takes its buffer at the first write with
 * `Buffer.allocUnsafe`, which serves sizes under 4 KB from Node's shared pool. Skipping the zero
 * fill is safe because an encoder only ever exposes the bytes it has written
 * (`buffer` is `buf.slice(0, offset)`, and every write lands below `offset` before it moves).
 * The bytes on the wire are the same; test/kafkajs-pooled-encoder.test.ts compares them with an
 * unpatched kafkajs.
 *
 * The constructor calls `Encoder.nextPowerOfTwo(initialSize)` for its first buffer and
 * `ensureAvailable` is the only other caller (kafkajs passes no initial size anywhere), so
 * `nextPowerOfTwo` returning 0 makes that first buffer empty; `ensureAvailable` below no longer
 * uses it.
 *
 * Likewise a varint (about twenty per record: lengths, deltas, one per header key and value)
 * is written straight into the buffer, not gathered in an array and copied from a Buffer made
 * of it; same loop, same bytes.
 */
import { createRequire } from 'node:module';

interface EncoderClass {
  nextPowerOfTwo(value: number): number;
  prototype: { buf: Buffer; offset: number; ensureAvailable(length: number): void; writeUVarInt(value: number): unknown };
}
type Encoder = EncoderClass['prototype'];

const PATCHED = Symbol.for('ledgerline.kafkajs-pooled-encoder');
/** What kafkajs's encoder started with: most records and headers fit without growing. */
const FIRST_BUFFER = 512;

export function poolEncoderBuffers(Encoder: EncoderClass & { [PATCHED]?: true }): void {
  if (Encoder[PATCHED]) return;
  Encoder.nextPowerOfTwo = () => 0;
  Encoder.prototype.ensureAvailable = function (this: Encoder, length: number) {
    const needed = this.offset + length;
    if (needed <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(FIRST_BUFFER, 2 ** Math.ceil(Math.log2(needed))));
    this.buf.copy(next, 0, 0, this.offset);
    this.buf = next;
  };
  Encoder.prototype.writeUVarInt = function (this: Encoder, value: number) {
    this.ensureAvailable(5); // a 32-bit value takes at most five
    while ((value & 0xffffff80) !== 0) {
      this.buf[this.offset++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    this.buf[this.offset++] = value & 0x7f;
    return this;
  };
  Encoder[PATCHED] = true;
}

const require = createRequire(import.meta.url);
poolEncoderBuffers(require('kafkajs/src/protocol/encoder') as EncoderClass);
