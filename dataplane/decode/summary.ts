/**
 * `summary(layers)`: one line per packet in the manner of `tcpdump -n`, e.g.
 * `198.18.0.1 > 198.18.0.2 VXLAN vni 42: 02:00:00:00:00:01 > 02:00:00:00:00:02: IP 10.0.0.1 > 10.0.0.2: ICMP echo request id 7 seq 1`.
 * The outermost frame omits MAC addresses (as tcpdump without -e); frames inside VXLAN show them,
 * since which MAC a VTEP saw is usually the question. A malformed layer ends the line with `[malformed …]`.
 */
import type { FieldValue, Layer } from './layers.ts';

export function summary(layers: readonly Layer[]): string {
  if (layers.length === 0) return '(empty)';
  return frame(layers, 0, false);
}

function f(layer: Layer | undefined, key: string): FieldValue | undefined {
  return layer?.fields[key];
}

function bad(layer: Layer | undefined): string | undefined {
  const m = f(layer, 'malformed');
  return m === undefined ? undefined : `[malformed ${String(m)}]`;
}

function frame(layers: readonly Layer[], i: number, showMacs: boolean): string {
  const eth = layers[i];
  if (eth === undefined) return '';
  if (bad(eth)) return bad(eth)!;
  const macs = `${f(eth, 'src')} > ${f(eth, 'dst')}`;
  const prefix = showMacs ? `${macs}: ` : '';
  const next = layers[i + 1];
  if (next?.name === 'ipv4') return prefix + ip(layers, i + 1);
  if (next?.name === 'arp') return prefix + arp(next);
  const len = f(next, 'length') ?? 0;
  return `${macs}, ethertype ${f(eth, 'typeName') ?? f(eth, 'type')} (${f(eth, 'type')}), length ${Number(len) + 14}`;
}

function arp(a: Layer): string {
  if (bad(a)) return `ARP ${bad(a)}`;
  return f(a, 'operation') === 'request'
    ? `ARP, Request who-has ${f(a, 'targetIp')} tell ${f(a, 'senderIp')}`
    : `ARP, Reply ${f(a, 'senderIp')} is-at ${f(a, 'senderMac')}`;
}

function ip(layers: readonly Layer[], i: number): string {
  const ipl = layers[i];
  if (bad(ipl)) return `IP ${bad(ipl)}`;
  const src = f(ipl, 'src');
  const dst = f(ipl, 'dst');
  const t = layers[i + 1];
  switch (t?.name) {
    case 'icmp':
      return `IP ${src} > ${dst}: ${icmp(t)}`;
    case 'tcp': {
      if (bad(t)) return `IP ${src} > ${dst}: TCP ${bad(t)}`;
      const ack = String(f(t, 'flags')).includes('.') ? `, ack ${f(t, 'ack')}` : '';
      return `IP ${src}.${f(t, 'srcPort')} > ${dst}.${f(t, 'dstPort')}: Flags [${f(t, 'flags')}], seq ${f(t, 'seq')}${ack}, win ${f(t, 'window')}, length ${f(t, 'payloadLength')}`;
    }
    case 'udp':
      return udp(layers, i + 1, String(src), String(dst));
    case 'payload':
      return `IP ${src} > ${dst}: ${f(t, 'note') ?? 'payload'}, length ${f(t, 'length')}`;
    default:
      return `IP ${src} > ${dst}: proto ${f(ipl, 'protocol')}, length ${f(ipl, 'length')}`;
  }
}

function icmp(t: Layer): string {
  if (bad(t)) return `ICMP ${bad(t)}`;
  const name = f(t, 'typeName');
  if (f(t, 'type') === 0 || f(t, 'type') === 8) return `ICMP ${name} id ${f(t, 'id')} seq ${f(t, 'seq')}`;
  const mtu = f(t, 'nextHopMtu') !== undefined ? ` mtu ${f(t, 'nextHopMtu')}` : '';
  return `ICMP ${name} code ${f(t, 'code')}${mtu}`;
}

function udp(layers: readonly Layer[], i: number, src: string, dst: string): string {
  const u = layers[i];
  if (bad(u)) return `IP ${src} > ${dst}: UDP ${bad(u)}`;
  const ports = `IP ${src}.${f(u, 'srcPort')} > ${dst}.${f(u, 'dstPort')}`;
  const next = layers[i + 1];
  switch (next?.name) {
    case 'vxlan':
      return `${src} > ${dst} ${vxlan(layers, i + 1)}`;
    case 'link':
      return `${src} > ${dst} ${link(layers, i + 1)}`;
    case 'dhcp': {
      if (bad(next)) return `${ports}: DHCP ${bad(next)}`;
      const type = f(next, 'messageTypeName') ?? (f(next, 'op') === 'request' ? 'BOOTP request' : 'BOOTP reply');
      return `${ports}: DHCP ${type}, xid ${f(next, 'xid')}, chaddr ${f(next, 'chaddr')}, length ${Number(f(u, 'length')) - 8}`;
    }
    default:
      return `${ports}: UDP, length ${Number(f(u, 'length')) - 8}`;
  }
}

function vxlan(layers: readonly Layer[], i: number): string {
  const v = layers[i];
  if (bad(v)) return `VXLAN ${bad(v)}`;
  return `VXLAN vni ${f(v, 'vni')}: ${frame(layers, i + 1, true)}`;
}

function link(layers: readonly Layer[], i: number): string {
  const l = layers[i];
  const head = `LINK ${f(l, 'typeName') ?? 'message'}`;
  if (f(l, 'type') !== 4 || f(l, 'counter') === undefined) return bad(l) ? `${head} ${bad(l)}` : `${head}, length ${f(l, 'length')}`;
  const ids = `receiver=${f(l, 'receiver')}, counter=${f(l, 'counter')}`;
  if (bad(l)) return `${head} ${f(l, 'state') ?? ''} ${ids} ${bad(l)}`.replace(/ +/g, ' ');
  if (f(l, 'state') === 'encrypted') return `${head} encrypted, ${ids}, length ${f(l, 'length')}`;
  if (layers[i + 1] === undefined) return `${head} decrypted, ${ids}, keepalive`;
  return `${head} decrypted, ${ids}: ${vxlan(layers, i + 1)}`;
}
