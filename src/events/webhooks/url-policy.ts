import { lookup as lookupCallback, type LookupAddress } from 'node:dns';
import { Resolver } from 'node:dns/promises';
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

/** A host's addresses (IPv4 and IPv6; none: it has none); throws when they could not be had (timeout, server failure). */
export type HostResolver = (host: string) => Promise<string[]>;

/**
 * Resolves webhook hosts through DNS with c-ares (`dns.Resolver`), not getaddrinfo
 * (`dns.lookup`). A getaddrinfo call holds one of libuv's 4 threads until it ends, so a slow DNS
 * server for one endpoint's host stalled every other lookup and file operation of the process;
 * a c-ares query holds no thread, and gives up after `timeoutMs` per try. It reads
 * /etc/resolv.conf's servers (or `servers`, IP[:port]), not /etc/hosts: a production target is
 * a public name. One answer family failing is ignored when the other answered: the connection
 * only ever uses the addresses returned, and each of them is checked.
 */
export function dnsHostResolver({ servers, timeoutMs = 2_000, tries = 2 }: { servers?: readonly string[]; timeoutMs?: number; tries?: number } = {}): HostResolver {
  const resolver = new Resolver({ timeout: timeoutMs, tries });
  if (servers && servers.length > 0) resolver.setServers(servers);
  const noAnswer = (err: unknown) => ['ENODATA', 'ENOTFOUND'].includes((err as NodeJS.ErrnoException).code ?? '');
  return async (host) => {
    const answers = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
    const addresses = answers.flatMap((a) => (a.status === 'fulfilled' ? a.value : []));
    const failed = answers.find((a): a is PromiseRejectedResult => a.status === 'rejected' && !noAnswer(a.reason));
    if (addresses.length === 0 && failed) throw failed.reason;
    return addresses;
  };
}

/** One resolver per list of servers (WEBHOOK_DNS_SERVERS; empty: the system's). */
const resolvers = new Map<string, HostResolver>();
export function webhookHostResolver(servers: readonly string[] = []): HostResolver {
  const key = servers.join(',');
  let resolver = resolvers.get(key);
  if (!resolver) resolvers.set(key, (resolver = dnsHostResolver({ servers })));
  return resolver;
}

/**
 * Why `url` may not be a webhook target, or undefined when it may. With `allowPrivate`
 * (development, tests) http and any address are fine. Otherwise only https to a host whose every
 * DNS answer is a public address; checked at registration, and again as each delivery connects
 * (DNS can change: publicOnlyLookup). With `resolve: false` a host name is not looked up here
 * (a delivery's connection does that, once); IP literals are checked all the same. Names are
 * resolved by `webhookHostResolver(dnsServers)`; when DNS cannot answer, this throws its error.
 */
export async function webhookUrlProblem(
  url: string,
  allowPrivate: boolean,
  { resolve = true, dnsServers }: { resolve?: boolean; dnsServers?: readonly string[] } = {},
): Promise<string | undefined> {
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
  // A resolver that fails (a timeout, a server failure) throws: that says nothing about the URL.
  const addresses = isIP(host) ? [host] : await webhookHostResolver(dnsServers)(host);
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
 * check before the request covers them. In production the host is resolved by
 * `webhookHostResolver(dnsServers)`; with `allowPrivate` (development, tests) by the system's
 * lookup, which also reads /etc/hosts (localhost, names of a dev setup).
 */
export function publicOnlyLookup(allowPrivate: boolean, dnsServers?: readonly string[]): LookupFunction {
  if (allowPrivate) return (hostname, options, callback) => lookupCallback(hostname, options, callback as never);
  const resolve = webhookHostResolver(dnsServers);
  return (hostname, options, callback) => {
    resolve(hostname).then(
      (all) => {
        const family = options.family === 4 || options.family === 6 ? options.family : undefined;
        const addresses: LookupAddress[] = all.map((address) => ({ address, family: isIP(address) })).filter((a) => !family || a.family === family);
        if (addresses.length === 0) return callback(Object.assign(new Error(doesNotResolve(hostname)), { code: 'ENOTFOUND' }), '', 0);
        const problem = addressProblem(hostname, all);
        if (problem) return callback(Object.assign(new Error(problem), { code: 'ENOTPUBLIC' }), '', 0);
        if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
        callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
}
