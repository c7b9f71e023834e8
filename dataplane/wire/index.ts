/** The pure-TypeScript wire codecs: one module per protocol, re-exported here. */
export { WireError } from './errors.ts';
export * from './address.ts';
export * from './checksum.ts';
export * from './ethernet.ts';
export * from './arp.ts';
export * from './ipv4.ts';
export * from './udp.ts';
export * from './icmpv4.ts';
export * from './vxlan.ts';
export * from './flow-hash.ts';
export * from './tso.ts';
export * from './link.ts';
export * from './tcp.ts';
export * from './dhcp.ts';
export * from './dns.ts';
export * from './gro.ts';
export * from './port-filter.ts';
