/** IP address helpers shared by the proxies' listeners, authorization and capture. */
import { isIPv4 } from 'node:net';

/**
 * The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:10.0.0.1` -> `10.0.0.1`),
 * else `ip` unchanged. Dual-stack sockets report IPv4 peers in the mapped form; workloads,
 * policies and conntrack know them by their IPv4 address.
 */
export function stripV4Mapped(ip: string): string {
  if (ip.length > 7 && ip.charCodeAt(0) === 58 /* : */ && ip.slice(0, 7).toLowerCase() === '::ffff:') {
    const v4 = ip.slice(7);
    if (isIPv4(v4)) return v4;
  }
  return ip;
}
