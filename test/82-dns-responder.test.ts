// DNS responder core: A and PTR for instances and extra entries, NXDOMAIN/NODATA in our zone, forward or
// REFUSED outside it, FORMERR/NOTIMP/BADVERS, truncation, drops by reason, and the reply frame.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import {
  DNS_CLASS_IN, DNS_RCODE_FORMERR, DNS_RCODE_NOERROR, DNS_RCODE_NOTIMP, DNS_RCODE_NXDOMAIN, DNS_RCODE_REFUSED,
  DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_ANY, DNS_TYPE_MX, DNS_TYPE_OPT, DNS_TYPE_PTR, encodeDns, formatIpv4Address,
  parseDns,
} from '../dataplane/wire/index.ts';
import type { DnsMessage, DnsRecord } from '../dataplane/wire/index.ts';
import { DnsResponder, buildDnsReplyFrame, staticRecordSource, type DnsOutcome, type DnsResponderOptions } from '../control/services/dns-responder.ts';
import { buildUdpFrame, readUdpFrame } from '../control/services/dhcp-frames.ts';
import { hex } from './helpers/wire-assert.ts';

const DOMAIN = 'ns1.appnet.test';
const RECORDS = staticRecordSource(DOMAIN, [
  { name: 'web1', ipv4: '198.18.4.10' },
  { name: 'Web2', ipv4: '198.18.4.11' },
  { name: 'db', ipv4: '198.18.4.20' },
  { name: 'api.ns1.appnet.test', ipv4: '198.18.4.20' },
]);
const BASE: DnsResponderOptions = { zone: 'appnet.test', cidr: '198.18.4.0/24', records: RECORDS };

const OPT: DnsRecord = { name: '', type: DNS_TYPE_OPT, class: 4096, ttl: 0, data: { kind: 'opaque', bytes: new Uint8Array(0) } };

function query(name: string, type = DNS_TYPE_A, over: Partial<DnsMessage> = {}): Uint8Array {
  return encodeDns({
    id: 0xbeef, qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, z: false, ad: false, cd: false, rcode: 0,
    questions: [{ name, type, class: DNS_CLASS_IN }], answers: [], authorities: [], additionals: [], ...over,
  });
}

type Reply = Extract<DnsOutcome, { action: 'reply' }>;

function reply(t: ExecutionContext, o: DnsOutcome, rcode: number): DnsMessage {
  if (o.action !== 'reply') {
    t.fail(`expected a reply, got ${o.action}${o.action === 'drop' ? ` (${o.reason})` : ''}`);
    throw new Error('unreachable');
  }
  t.is(o.rcode, rcode);
  // What goes on the wire is what the outcome says.
  const wire = parseDns((o as Reply).payload);
  t.deepEqual(wire, o.message);
  t.true(wire.qr);
  return wire;
}

const addresses = (m: DnsMessage) => m.answers.map((r) => (r.data.kind === 'a' ? formatIpv4Address(r.data.address) : r.data));

test('A for an instance under <namespace>.<zone>: authoritative, id and RD copied, question echoed', (t) => {
  const r = new DnsResponder(BASE);
  const m = reply(t, r.handleQuery(query('web1.ns1.appnet.test')), DNS_RCODE_NOERROR);
  t.like(m, { id: 0xbeef, aa: true, rd: true, ra: false, tc: false });
  t.deepEqual(m.questions, [{ name: 'web1.ns1.appnet.test', type: DNS_TYPE_A, class: DNS_CLASS_IN }]);
  t.deepEqual(m.answers, [{ name: 'web1.ns1.appnet.test', type: DNS_TYPE_A, class: DNS_CLASS_IN, ttl: 0, data: { kind: 'a', address: 0xc612040a } }]);
});

test('names match without regard to case or a final dot, and the answer keeps the asker\'s spelling', (t) => {
  const r = new DnsResponder({ ...BASE, ttl: 30 });
  const m = reply(t, r.handleQuery(query('WEB2.Ns1.AppNet.TEST.')), DNS_RCODE_NOERROR);
  t.deepEqual(addresses(m), ['198.18.4.11']);
  t.is(m.answers[0].name, 'WEB2.Ns1.AppNet.TEST');
  t.is(m.answers[0].ttl, 30);
});

test('extra entries answer as single labels under the domain and as full names; ANY gets the A records', (t) => {
  const r = new DnsResponder(BASE);
  t.deepEqual(addresses(reply(t, r.handleQuery(query('db.ns1.appnet.test')), DNS_RCODE_NOERROR)), ['198.18.4.20']);
  t.deepEqual(addresses(reply(t, r.handleQuery(query('api.ns1.appnet.test', DNS_TYPE_ANY)), DNS_RCODE_NOERROR)), ['198.18.4.20']);
});

test('a known name asked for AAAA or MX is NODATA (NOERROR, no answers), not NXDOMAIN', (t) => {
  const r = new DnsResponder(BASE);
  for (const type of [DNS_TYPE_AAAA, DNS_TYPE_MX]) {
    const m = reply(t, r.handleQuery(query('web1.ns1.appnet.test', type)), DNS_RCODE_NOERROR);
    t.deepEqual(m.answers, []);
    t.true(m.aa);
  }
  t.deepEqual(reply(t, r.handleQuery(query('appnet.test')), DNS_RCODE_NOERROR).answers, [], 'the zone apex exists');
});

test('unknown names in our zone are NXDOMAIN and never forwarded, even with an upstream', (t) => {
  const r = new DnsResponder({ ...BASE, upstream: '198.18.0.53' });
  for (const name of ['nope.ns1.appnet.test', 'web1.other-namespace.appnet.test', 'ns1.appnet.test']) {
    const m = reply(t, r.handleQuery(query(name)), DNS_RCODE_NXDOMAIN);
    t.true(m.aa, name);
    t.true(m.ra, 'recursion is available through the upstream');
  }
  t.is(r.counters().forwarded, 0);
});

test('an extra zone (the outbound names of connections) is answered and kept from the upstream like the main one', (t) => {
  const records = staticRecordSource(DOMAIN, [{ name: 'db.0a1b2c3d.appnet', ipv4: '198.19.128.1' }]);
  const r = new DnsResponder({ ...BASE, records, extraZones: ['appnet'], upstream: '198.18.0.53' });
  const m = reply(t, r.handleQuery(query('DB.0a1b2c3d.appnet.')), DNS_RCODE_NOERROR);
  t.deepEqual(m.answers.map((a) => a.data), [{ kind: 'a', address: 0xc6138001 }]);
  t.true(m.aa);
  t.true(reply(t, r.handleQuery(query('cache.0a1b2c3d.appnet')), DNS_RCODE_NXDOMAIN).aa);
  // Without the extra zone the same name goes upstream.
  t.is(new DnsResponder({ ...BASE, records, upstream: '198.18.0.53' }).handleQuery(query('db.0a1b2c3d.appnet')).action, 'forward');
  t.is(r.counters().forwarded, 0);
});

test('PTR for the network\'s addresses: every name of the address; unknown addresses NXDOMAIN', (t) => {
  const r = new DnsResponder(BASE);
  const m = reply(t, r.handleQuery(query('20.4.18.198.in-addr.arpa', DNS_TYPE_PTR)), DNS_RCODE_NOERROR);
  t.deepEqual(m.answers.map((a) => a.data), [{ kind: 'name', name: 'db.ns1.appnet.test' }, { kind: 'name', name: 'api.ns1.appnet.test' }]);
  t.deepEqual(reply(t, r.handleQuery(query('10.4.18.198.IN-ADDR.ARPA', DNS_TYPE_PTR)), DNS_RCODE_NOERROR).answers.map((a) => a.data),
    [{ kind: 'name', name: 'web1.ns1.appnet.test' }]);
  t.true(reply(t, r.handleQuery(query('99.4.18.198.in-addr.arpa', DNS_TYPE_PTR)), DNS_RCODE_NXDOMAIN).aa);
  t.deepEqual(reply(t, r.handleQuery(query('10.4.18.198.in-addr.arpa', DNS_TYPE_A)), DNS_RCODE_NOERROR).answers, []);
});

test('other names are forwarded unchanged to the upstream when there is one, REFUSED otherwise', (t) => {
  const q = query('example.org');
  const fwd = new DnsResponder({ ...BASE, upstream: '198.18.0.53:5353' }).handleQuery(q);
  t.deepEqual(fwd, { action: 'forward', upstream: { ipv4: '198.18.0.53', port: 5353 }, query: q });
  t.deepEqual(new DnsResponder({ ...BASE, upstream: '198.18.0.53' }).handleQuery(q), { action: 'forward', upstream: { ipv4: '198.18.0.53', port: 53 }, query: q });
  const outside = new DnsResponder({ ...BASE, upstream: '198.18.0.53' }).handleQuery(query('1.0.19.198.in-addr.arpa', DNS_TYPE_PTR));
  t.is(outside.action, 'forward', 'reverse names outside the network are not ours');
  const refused = reply(t, new DnsResponder(BASE).handleQuery(q), DNS_RCODE_REFUSED);
  t.like(refused, { aa: false, ra: false, answers: [] });
  t.is(refused.questions[0].name, 'example.org');
});

// Queries with a readable header that are malformed otherwise: FORMERR with the query's id, no question.
const FORMERR_CASES: Array<[string, Uint8Array]> = [
  ['a pointer loop in the question', hex('beef 0100 0001 0000 0000 0000 c00c 0001 0001')],
  ['a question cut short', hex('beef 0100 0001 0000 0000 0000 03 7777')],
  ['no question', hex('beef 0100 0000 0000 0000 0000')],
  ['two questions', query('a.example', DNS_TYPE_A, { questions: [{ name: 'a.example', type: 1, class: 1 }, { name: 'b.example', type: 1, class: 1 }] })],
  ['two OPT records', query('web1.ns1.appnet.test', DNS_TYPE_A, { additionals: [OPT, OPT] })],
  ['an OPT record not owned by the root', query('web1.ns1.appnet.test', DNS_TYPE_A, { additionals: [{ ...OPT, name: 'x' }] })],
];
for (const [name, bytes] of FORMERR_CASES) {
  test(`FORMERR for ${name}`, (t) => {
    const r = new DnsResponder({ ...BASE, upstream: '198.18.0.53' });
    const m = reply(t, r.handleQuery(bytes), DNS_RCODE_FORMERR);
    t.like(m, { id: 0xbeef, rd: true, questions: [], answers: [] });
    t.deepEqual(r.counters().replies, { FORMERR: 1 });
  });
}

test('an opcode other than QUERY is NOTIMP', (t) => {
  const m = reply(t, new DnsResponder(BASE).handleQuery(query('web1.ns1.appnet.test', DNS_TYPE_A, { opcode: 2 })), DNS_RCODE_NOTIMP);
  t.is(m.opcode, 2);
});

test('EDNS: an OPT in the query gets our OPT (1232) back; version 1 gets BADVERS', (t) => {
  const r = new DnsResponder(BASE);
  const m = reply(t, r.handleQuery(query('web1.ns1.appnet.test', DNS_TYPE_A, { additionals: [OPT] })), DNS_RCODE_NOERROR);
  t.deepEqual(m.additionals, [{ name: '', type: DNS_TYPE_OPT, class: 1232, ttl: 0, data: { kind: 'opaque', bytes: new Uint8Array(0) } }]);
  const bad = r.handleQuery(query('web1.ns1.appnet.test', DNS_TYPE_A, { additionals: [{ ...OPT, ttl: 1 << 16 }] }));
  t.like(bad, { action: 'reply', rcode: 16 });
  const wire = parseDns((bad as Reply).payload);
  t.is(wire.rcode, 0, 'BADVERS is 16: the header holds its low 4 bits');
  t.is(wire.additionals[0].ttl >>> 24, 1, 'and the OPT record its high 8 bits');
  t.deepEqual(wire.answers, []);
  t.deepEqual(r.counters().replies, { NOERROR: 1, BADVERS: 1 });
});

test('a reply too big for 512 bytes is truncated (TC, no answers) unless EDNS allows it', (t) => {
  const many = staticRecordSource(DOMAIN, Array.from({ length: 40 }, (_, i) => ({ name: 'big', ipv4: `198.18.4.${100 + i}` })));
  const r = new DnsResponder({ ...BASE, records: many });
  const plain = reply(t, r.handleQuery(query('big.ns1.appnet.test')), DNS_RCODE_NOERROR);
  t.like(plain, { tc: true, answers: [] });
  t.true((r.handleQuery(query('big.ns1.appnet.test')) as Reply).payload.length <= 512);
  const edns = reply(t, r.handleQuery(query('big.ns1.appnet.test', DNS_TYPE_A, { additionals: [OPT] })), DNS_RCODE_NOERROR);
  t.is(edns.answers.length, 40);
  t.false(edns.tc);
});

// --- frames ---------------------------------------------------------------------------------------

const CLIENT = { srcMac: '02:00:00:0a:00:01', dstMac: '02:00:00:00:00:01', srcIp: '198.18.4.10', dstIp: '198.18.4.1', srcPort: 40123, dstPort: 53 };

test('unreadable packets are dropped by reason and counted; the responder keeps answering', (t) => {
  const r = new DnsResponder(BASE);
  const good = buildUdpFrame({ ...CLIENT, payload: query('web1.ns1.appnet.test') });
  const badSum = good.slice();
  badSum[14 + 20 + 6] ^= 0xff;
  const cases: Array<[Uint8Array, string]> = [
    [buildUdpFrame({ ...CLIENT, payload: hex('beef 0100 0001') }), 'truncated'],
    [buildUdpFrame({ ...CLIENT, payload: encodeDns({ ...parseDns(query('x.example')), qr: true }) }), 'response'],
    [buildUdpFrame({ ...CLIENT, dstPort: 54, payload: query('web1.ns1.appnet.test') }), 'not-dns-port'],
    [badSum, 'bad-udp'],
    [good.subarray(0, 30), 'bad-ipv4'],
  ];
  for (const [frame, reason] of cases) {
    let o: DnsOutcome | undefined;
    t.notThrows(() => { o = r.handleFrame(frame); });
    t.like(o, { action: 'drop', reason });
  }
  t.deepEqual(r.counters().dropped, { truncated: 1, response: 1, 'not-dns-port': 1, 'bad-udp': 1, 'bad-ipv4': 1 });
  t.is(r.handleFrame(good).action, 'reply');
  t.is(r.counters().received, cases.length + 1);
});

test('the reply frame goes from the address the query was sent to, port 53, back to the client', (t) => {
  const r = new DnsResponder(BASE);
  const o = r.handleFrame(buildUdpFrame({ ...CLIENT, payload: query('web1.ns1.appnet.test') }));
  if (o.action !== 'reply' || !o.request) return t.fail(o.action);
  const back = readUdpFrame(buildDnsReplyFrame(o.request, o.payload));
  if (!back.ok) return t.fail(back.detail);
  t.like(back.frame, { srcMac: CLIENT.dstMac, dstMac: CLIENT.srcMac, srcIp: '198.18.4.1', dstIp: '198.18.4.10', srcPort: 53, dstPort: 40123 });
  t.deepEqual(addresses(parseDns(back.frame.payload)), ['198.18.4.10']);
});

test('options the integrator got wrong are refused at construction, naming the option', (t) => {
  t.throws(() => new DnsResponder({ ...BASE, upstream: 'dns.example' }), { message: /upstream "dns.example"/ });
  t.throws(() => new DnsResponder({ ...BASE, cidr: '198.18.4.1/24' }), { message: /cidr/ });
});
