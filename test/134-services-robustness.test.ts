// Property tests of the network services that read tenants' bytes (the frames the engine punts): the DHCP
// server, the DNS responder, the gateway's ARP and echo answers and the ping reader. Any frame, valid or
// damaged, is answered, ignored or dropped with a reason; none throws, and every frame is counted once.
import test from 'ava';
import fc from 'fast-check';
import {
  BOOTREQUEST, DHCP_CLIENT_PORT, DHCP_OPT_MESSAGE_TYPE, DHCP_OPT_REQUESTED_IP, DHCP_OPT_SERVER_ID, DHCP_SERVER_PORT, DNS_PORT,
  DNS_TYPE_A, DNS_TYPE_PTR, encodeDhcp, encodeDns, ipv4ToBytes, parseIpv4Address, parseMac,
} from '../dataplane/wire/index.ts';
import type { DhcpOption } from '../dataplane/wire/index.ts';
import { DhcpServer, MemoryLeaseStore, type DhcpNetwork } from '../control/services/dhcp-server.ts';
import { DnsResponder, staticRecordSource } from '../control/services/dns-responder.ts';
import { buildUdpFrame } from '../control/services/dhcp-frames.ts';
import { answerGateway } from '../control/services/gateway.ts';
import { readPingFrame } from '../control/services/ping.ts';
import { bytes, dnsMessage, frames, mutated, rec } from './helpers/properties.ts';

const RUNS = { numRuns: 2000 };
const NET: DhcpNetwork = { cidr: '198.18.4.0/24', gateway: '198.18.4.1', dnsServer: '198.18.4.1', domain: 'ns1.appnet.test', mtu: 1450, leaseSeconds: 3600 };
const GW = { ipv4: '198.18.4.1', mac: '02:61:6e:00:00:2a' };
const MACS = ['02:00:00:0a:00:01', '02:00:00:0a:00:02', '02:00:00:ff:ff:ff'];
const ADDRS = ['198.18.4.10', '198.18.4.11', '198.18.4.1', '198.18.5.1', '0.0.0.0'];

const sum = (o: Record<string, number | undefined>): number => Object.values(o).reduce<number>((a, b) => a + (b ?? 0), 0);

/** Client messages a real client could send, from known and unknown MACs, with the options the server reads. */
const dhcpFrame = rec({
  mac: fc.constantFrom(...MACS), src: fc.constantFrom(...MACS), type: fc.integer({ min: 0, max: 9 }),
  requested: fc.option(fc.constantFrom(...ADDRS), { nil: undefined }), server: fc.option(fc.constantFrom(...ADDRS), { nil: undefined }),
  ciaddr: fc.constantFrom(...ADDRS), xid: fc.nat(), hlen: fc.constantFrom(6, 6, 6, 0, 16),
}).map((m) => {
  const options: DhcpOption[] = [{ code: DHCP_OPT_MESSAGE_TYPE, data: Uint8Array.of(m.type) }];
  if (m.requested) options.push({ code: DHCP_OPT_REQUESTED_IP, data: ipv4ToBytes(parseIpv4Address(m.requested)) });
  if (m.server) options.push({ code: DHCP_OPT_SERVER_ID, data: ipv4ToBytes(parseIpv4Address(m.server)) });
  const chaddr = new Uint8Array(m.hlen);
  chaddr.set(parseMac(m.mac).subarray(0, Math.min(6, m.hlen)));
  const payload = encodeDhcp({ op: BOOTREQUEST, htype: 1, hops: 0, xid: m.xid, secs: 0, flags: 0, ciaddr: parseIpv4Address(m.ciaddr), yiaddr: 0,
    siaddr: 0, giaddr: 0, chaddr, sname: '', file: '', options });
  return buildUdpFrame({ srcMac: m.src, dstMac: 'ff:ff:ff:ff:ff:ff', srcIp: m.ciaddr, dstIp: '255.255.255.255', srcPort: DHCP_CLIENT_PORT, dstPort: DHCP_SERVER_PORT, payload });
});

test('DHCP server: any frame is answered, ignored or dropped, never thrown on, and counted once', (t) => {
  const leases = new MemoryLeaseStore();
  const bindings = new Map([[MACS[0], { ipv4: '198.18.4.10', network: NET }], [MACS[1], { ipv4: '198.18.4.11', network: NET }]]);
  const s = new DhcpServer({ serverMac: GW.mac, lookup: (m) => bindings.get(m), leases });
  let now = 1_700_000_000_000;
  let handled = 0;
  const outcomes = new Set<string>();
  fc.assert(fc.property(fc.oneof(dhcpFrame, mutated(dhcpFrame), mutated(frames), bytes(400)), (f) => {
    now += 1000;
    const o = s.handleFrame(f, now);
    outcomes.add(`${o.action}:${'type' in o ? o.type : o.reason}`);
    handled++;
  }), RUNS);
  const c = s.counters();
  t.is(c.received, handled);
  t.is(sum(c.sent) + sum(c.dropped) + sum(c.quiet), handled, JSON.stringify(c));
  // The property reached the server's decisions, not only its first length check.
  for (const o of ['reply:OFFER', 'reply:ACK', 'reply:NAK']) t.true(outcomes.has(o), `${o} never happened: ${[...outcomes].join(' ')}`);
});

const dnsQuery = fc.tuple(dnsMessage, fc.constantFrom('web1.ns1.appnet.test', 'nope.appnet.test', '10.4.18.198.in-addr.arpa', 'example.com'), fc.boolean())
  .map(([m, name, ptr]) => encodeDns({ ...m, qr: false, opcode: 0, questions: [{ name, type: ptr ? DNS_TYPE_PTR : DNS_TYPE_A, class: 1 }, ...m.questions.slice(0, 1)] }));
const dnsFrame = fc.oneof(dnsQuery, dnsMessage.map(encodeDns), bytes(80)).map((payload) =>
  buildUdpFrame({ srcMac: MACS[0], dstMac: GW.mac, srcIp: '198.18.4.10', dstIp: GW.ipv4, srcPort: 40000, dstPort: DNS_PORT, payload }));

test('DNS responder: any frame is answered, forwarded or dropped, never thrown on, and counted once', (t) => {
  const r = new DnsResponder({ zone: 'appnet.test', cidr: '198.18.4.0/24', upstream: '198.18.0.53', records: staticRecordSource('ns1.appnet.test', [{ name: 'web1', ipv4: '198.18.4.10' }]) });
  let handled = 0;
  const actions = new Set<string>();
  fc.assert(fc.property(fc.oneof(dnsFrame, mutated(dnsFrame), mutated(frames)), (f) => {
    actions.add(r.handleFrame(f).action);
    handled++;
  }), RUNS);
  const c = r.counters();
  t.is(c.received, handled);
  t.is(sum(c.replies) + c.forwarded + sum(c.dropped), handled, JSON.stringify(c));
  t.deepEqual([...actions].sort(), ['drop', 'forward', 'reply']);
});

test('gateway and ping reader: any frame gives an outcome, never an exception', (t) => {
  fc.assert(fc.property(fc.oneof(mutated(frames), bytes(200)), (f) => {
    answerGateway(f, GW);
    readPingFrame(f, GW);
  }), RUNS);
  t.pass();
});
