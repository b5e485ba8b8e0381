/**
 * A DNS server on 127.0.0.1 (UDP, a random port) for tests of how webhook hosts are resolved:
 * every A query gets `a` (none: an empty answer), every AAAA query an empty answer; `nxdomain`
 * answers that no name exists, `silent` never answers.
 */
import { createSocket } from 'node:dgram';
import type { AddressInfo } from 'node:net';

export type FakeDnsMode = { a?: string; nxdomain?: boolean; silent?: boolean };

export async function startFakeDns(initial: FakeDnsMode): Promise<{ server: string; set: (mode: FakeDnsMode) => void; queries: () => number; close: () => Promise<void> }> {
  let mode = initial;
  let queries = 0;
  const socket = createSocket('udp4');
  socket.on('message', (query, from) => {
    queries++;
    if (mode.silent || query.length < 17) return;
    // The question: labels from byte 12 to a zero byte, then its type and class.
    let end = 12;
    while (end < query.length && query[end] !== 0) end += query[end]! + 1;
    end += 5;
    if (end > query.length) return; // not a query this server understands
    const type = query.readUInt16BE(end - 4);
    const answers = type === 1 && mode.a && !mode.nxdomain ? [mode.a] : [];
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2); // id
    header.writeUInt16BE(0x8180 | (mode.nxdomain ? 3 : 0), 2); // a response, recursion available; NXDOMAIN or no error
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    const records = answers.map((ip) => {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
      rr.writeUInt16BE(1, 2); // A
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6); // TTL
      rr.writeUInt16BE(4, 10);
      ip.split('.').forEach((octet, i) => rr.writeUInt8(Number(octet), 12 + i));
      return rr;
    });
    socket.send(Buffer.concat([header, query.subarray(12, end), ...records]), from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${(socket.address() as AddressInfo).port}`,
    set: (next) => (mode = next),
    queries: () => queries,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
