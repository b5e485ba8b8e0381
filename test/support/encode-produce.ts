/**
 * Encodes a few produce requests with kafkajs's protocol code (v3, the record-batch format, and
 * v7) and returns them as base64. Run as a script (`node --import tsx`), it prints them as JSON:
 * what an unpatched kafkajs encodes (test/kafkajs-pooled-encoder.test.ts).
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const T0 = 1_764_460_800_000;
// Sizes around the encoder's first buffer (512) and the buffer pool's limit (4 KB), and far beyond.
const SIZES = [0, 1, 300, 505, 511, 512, 513, 4090, 4097, 20000];

function messages(partition: number) {
  return Array.from({ length: 40 }, (_, i) => ({
    // Null keys and values (varint -1), lengths of one to three varint bytes.
    key: i === 11 ? null : `wallet-${partition}-${i}`,
    value: i === 7 ? Buffer.alloc(3000, 0x61 + partition) : i === 13 ? null : 'v'.repeat(SIZES[i % SIZES.length]!),
    timestamp: String(T0 + i * 3),
    headers: {
      ce_specversion: '1.0',
      ce_id: `018f0000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      ce_type: 'ledgerline.transfer.succeeded',
      ce_source: '/ledgerline/test',
      ce_time: new Date(T0 + i).toISOString(),
      ce_subject: `wallet-${i}`,
      'content-type': 'application/json',
      ...(i % 3 === 0 ? { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` } : {}),
    },
  }));
}

type ProduceRequest = (options: object) => { encode(): Promise<{ buffer: Buffer }> };

export async function encodeProduceRequests(): Promise<string[]> {
  const out: string[] = [];
  for (const version of [3, 7]) {
    const request = (require(`kafkajs/src/protocol/requests/produce/v${version}/request`) as ProduceRequest)({
      acks: -1,
      timeout: 30000,
      topicData: [{ topic: 'events', partitions: [0, 1, 2].map((partition) => ({ partition, messages: messages(partition) })) }],
    });
    out.push((await request.encode()).buffer.toString('base64'));
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.stdout.write(JSON.stringify(await encodeProduceRequests()));
