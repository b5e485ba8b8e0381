import { lookup as lookupCallback, type LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/** Addresses a production webhook may never reach (SSRF): private, loopback, link-local, etc. */
const BLOCKED = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) BLOCKED.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  // ::/96 holds :: and ::1 and the deprecated IPv4-compatible form (::a.b.c.d). The ranges that
  // carry an IPv4 address to a translator or tunnel (NAT64, IPv4-translated, 6to4, Teredo) could
  // reach a private IPv4 host through it, so none of them is public here.
  ['::', 96], ['::ffff:0:0:0', 96], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64],
  ['2001::', 32], ['2001:db8::', 32], ['2002::', 16], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8],
] as const) BLOCKED.addSubnet(net, prefix, 'ipv6');

export function isPublicAddress(address: string): boolean {
  // IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address it carries. (A mapped
  // range in the BlockList would also match every plain IPv4 address.)
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return isPublicAddress(mapped[1]!);
  if (/^::ffff:/i.test(address)) return false;
  const family = isIP(address);
  if (family === 0) return false;
  return !BLOCKED.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Why `url` may not be a webhook target, or undefined when it may. With `allowPrivate`
 * (development, tests) http and any address are fine. Otherwise only https to a host whose every
 * DNS answer is a public address; checked at registration, and again as each delivery connects
 * (DNS can change: publicOnlyLookup). With `resolve: false` a host name is not looked up here
 * (a delivery's connection does that, once); IP literals are checked all the same.
 */
export async function webhookUrlProblem(url: string, allowPrivate: boolean, { resolve = true } = {}): Promise<string | undefined> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'not a URL';
  }
  if (parsed.username || parsed.password) return 'credentials in the URL are not allowed';
  if (allowPrivate) return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? undefined : 'only http(s) URLs';
  if (parsed.protocol !== 'https:') return 'only https URLs are allowed';
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  if (!resolve && !isIP(host)) return undefined;
  let addresses: string[];
  try {
    addresses = isIP(host) ? [host] : (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
  } catch {
    return doesNotResolve(host);
  }
  return addressProblem(host, addresses);
}

/** Why a host that has no address may not be a webhook target. */
export const doesNotResolve = (host: string) => `the host ${host} does not resolve`;

/** Why a host with these DNS answers may not be a webhook target (none, or any non-public), or undefined. */
function addressProblem(host: string, addresses: readonly string[]): string | undefined {
  if (addresses.length === 0) return doesNotResolve(host);
  const bad = addresses.find((a) => !isPublicAddress(a));
  return bad ? `the host resolves to a non-public address (${bad})` : undefined;
}

/**
 * A `lookup` for the connection that sends a delivery: resolves the host again and refuses any
 * non-public answer, so a name that resolved to a public address when it was checked cannot
 * connect to a private one a moment later (DNS rebinding). IP literals are not looked up; the
 * check before the request covers them.
 */
export function publicOnlyLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    lookupCallback(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      if (addresses.length === 0) return callback(Object.assign(new Error(doesNotResolve(hostname)), { code: 'ENOTFOUND' }), '', 0);
      const problem = allowPrivate ? undefined : addressProblem(hostname, addresses.map((a) => a.address));
      if (problem) return callback(Object.assign(new Error(problem), { code: 'ENOTPUBLIC' }), '', 0);
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}
