// DNS codec: literal messages both ways, round trips of every record kind and section, compression on
// write, name limits, every malformed case naming its byte offset, and tshark reading what we emit.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DNS_CLASS_IN, DNS_RCODE_NXDOMAIN, DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_CNAME, DNS_TYPE_OPT, DNS_TYPE_PTR,
  DNS_TYPE_TXT, canonicalDnsName, dnsNameLabels, encodeDns, parseDns, parseDnsHeader, parseIpv4Address,
  parseReverseDnsName, readDnsName, reverseDnsName,
} from '../dataplane/wire/index.ts';
import type { DnsMessage } from '../dataplane/wire/index.ts';
import { writeCapture } from '../dataplane/pcap/index.ts';
import { buildUdpFrame } from '../control/services/dhcp-frames.ts';
import { hex, throwsWire } from './helpers/wire-assert.ts';
import { tsharkFields } from './helpers/testnet.ts';

// id 0x1234, RD, one question: example.com A IN.
const QUERY = hex(`
  1234 0100 0001 0000 0000 0000
  07 6578616d706c65 03 636f6d 00 0001 0001`);
// The answer, its owner compressed to the question's name at offset 12: example.com A 93.184.216.34, TTL 3600.
const RESPONSE = hex(`
  1234 8180 0001 0001 0000 0000
  07 6578616d706c65 03 636f6d 00 0001 0001
  c00c 0001 0001 00000e10 0004 5db8d822`);

const HEADER = { id: 0x1234, qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, z: false, ad: false, cd: false, rcode: 0 };

function message(over: Partial<DnsMessage>): DnsMessage {
  return { ...HEADER, questions: [], answers: [], authorities: [], additionals: [], ...over };
}

test('a literal query parses, and encodes back to the same bytes', (t) => {
  const m = parseDns(QUERY);
  t.deepEqual(m, message({ questions: [{ name: 'example.com', type: DNS_TYPE_A, class: DNS_CLASS_IN }] }));
  t.deepEqual(encodeDns(m), QUERY);
  t.like(parseDnsHeader(QUERY), { id: 0x1234, rd: true, qr: false, qdcount: 1, ancount: 0 });
});

test('a literal response with a compressed owner parses, and our encoding compresses the same way', (t) => {
  const m = parseDns(RESPONSE);
  t.like(m, { qr: true, rd: true, ra: true, rcode: 0 });
  t.deepEqual(m.answers, [{ name: 'example.com', type: DNS_TYPE_A, class: DNS_CLASS_IN, ttl: 3600, data: { kind: 'a', address: parseIpv4Address('93.184.216.34') } }]);
  t.deepEqual(encodeDns(m), RESPONSE);
});

test('every record kind in every section round-trips; suffixes are compressed, case is kept', (t) => {
  const m = message({
    qr: true, aa: true, rcode: DNS_RCODE_NXDOMAIN, ad: true, cd: true,
    questions: [{ name: 'Web1.ns1.appnet.test', type: DNS_TYPE_A, class: DNS_CLASS_IN }],
    answers: [
      { name: 'Web1.ns1.appnet.test', type: DNS_TYPE_A, class: DNS_CLASS_IN, ttl: 60, data: { kind: 'a', address: parseIpv4Address('198.18.4.10') } },
      { name: '10.4.18.198.in-addr.arpa', type: DNS_TYPE_PTR, class: DNS_CLASS_IN, ttl: 60, data: { kind: 'name', name: 'web1.ns1.appnet.test' } },
      { name: 'alias.ns1.appnet.test', type: DNS_TYPE_CNAME, class: DNS_CLASS_IN, ttl: 0, data: { kind: 'name', name: 'Web1.ns1.appnet.test' } },
    ],
    authorities: [
      { name: 'ns1.appnet.test', type: DNS_TYPE_TXT, class: DNS_CLASS_IN, ttl: 0xffffffff, data: { kind: 'opaque', bytes: hex('05 68656c6c6f') } },
    ],
    additionals: [
      { name: 'web1.ns1.appnet.test', type: DNS_TYPE_AAAA, class: DNS_CLASS_IN, ttl: 5, data: { kind: 'opaque', bytes: hex('20010db8000000000000000000000001') } },
      { name: '', type: DNS_TYPE_OPT, class: 1232, ttl: 0, data: { kind: 'opaque', bytes: new Uint8Array(0) } },
    ],
  });
  const bytes = encodeDns(m);
  t.deepEqual(parseDns(bytes), m);
  // Header 12 + question 26 + A 16 + PTR 26+10+7 + CNAME 6+10+2 + TXT 2+10+6 + AAAA 2+10+16 + OPT 11: every
  // repeated suffix is a 2-byte pointer (uncompressed the owners and targets alone would be 176 bytes).
  t.is(bytes.length, 174);
  // The CNAME target is exactly the question's name: a bare pointer to offset 12.
  const cnameTarget = Buffer.from(bytes).indexOf(Buffer.from('c00c', 'hex'), 12 + 26);
  t.true(cnameTarget > 0);
  // "web1" (lower case) is not "Web1": it gets its own label, then points at "ns1.appnet.test".
  t.true(Buffer.from(bytes).includes(Buffer.from('0477656231', 'hex')));
});

test('labels with dots, backslashes and unprintable bytes are escaped and round-trip', (t) => {
  const raw = hex('1234 0000 0001 0000 0000 0000  05 612e625c00 03 636f6d 00 0001 0001');
  const m = parseDns(raw);
  t.is(m.questions[0].name, 'a\\.b\\\\\\000.com');
  t.deepEqual(encodeDns(m), raw);
  t.deepEqual(dnsNameLabels('a\\.b\\\\\\000.com.').map((l) => [...l]), [[0x61, 0x2e, 0x62, 0x5c, 0], [0x63, 0x6f, 0x6d]]);
  t.deepEqual(dnsNameLabels('.'), []);
  t.is(canonicalDnsName('WeB1.Example.COM.'), 'web1.example.com');
});

test('label and name length limits hold on write and on read', (t) => {
  const l63 = 'a'.repeat(63);
  t.is(dnsNameLabels(`${l63}.com`).length, 2);
  throwsWire(t, () => dnsNameLabels(`${'a'.repeat(64)}.com`, 40), 'dns', 'name', 40);
  // 4 * (1 + 63) - 2 + 1 = 255 bytes on the wire is the most there can be.
  const max = [l63, l63, l63, 'a'.repeat(61)].join('.');
  t.is(dnsNameLabels(max).length, 4);
  throwsWire(t, () => dnsNameLabels(`${max}a`), 'dns', 'name', 0);
  throwsWire(t, () => dnsNameLabels('a..b'), 'dns', 'name', 0);
  throwsWire(t, () => dnsNameLabels('a\\'), 'dns', 'name', 0);
  throwsWire(t, () => dnsNameLabels('a\\300'), 'dns', 'name', 0);
  throwsWire(t, () => encodeDns(message({ questions: [{ name: `${max}a`, type: 1, class: 1 }] })), 'dns', 'name', 12);
  // On read: five 63-byte labels (320 bytes) in one name.
  const long = new Uint8Array(12 + 5 * 64 + 1 + 4);
  long[5] = 1;
  for (let i = 0; i < 5; i++) long[12 + i * 64] = 63;
  throwsWire(t, () => parseDns(long), 'dns', 'name', 12);
});

// Each malformed message and the field and offset its error must name.
const HDR = '1234 0100 0001 0000 0000 0000';
const MALFORMED: Array<[string, string, string, number]> = [
  ['an 11-byte header', '1234 0100 0001 0000 0000 00', 'header', 0],
  ['a question whose name runs past the end', `${HDR} 07 6578616d706c65`, 'name', 20],
  ['a label running past the end', `${HDR} 3f 6162`, 'label', 12],
  ['a question without type and class', `${HDR} 01 61 00 0001`, 'question 1', 12],
  ['a pointer cut off by the end', `${HDR} c0`, 'name pointer', 12],
  ['a pointer past the end', `${HDR} c0ff 0001 0001`, 'name pointer', 12],
  ['a pointer to itself', `${HDR} c00c 0001 0001`, 'name pointer', 12],
  ['two pointers pointing at each other', `${HDR} c00e c00c 0001 0001`, 'name pointer', 12],
  ['a label then a loop back to it', `${HDR} 01 61 c00c 0001 0001`, 'name pointer', 14],
  ['an extended label type (0x40)', `${HDR} 41 00 0001 0001`, 'label', 12],
  ['a second question that is missing', '1234 0100 0002 0000 0000 0000 01 61 00 0001 0001', 'name', 19],
  ['an answer cut before its rdlength', '1234 8100 0000 0001 0000 0000 01 61 00 0001 0001 0000', 'answer 1', 12],
  ['an answer whose rdlength overruns', '1234 8100 0000 0001 0000 0000 01 61 00 0001 0001 00000000 0008 01020304', 'rdlength', 23],
  ['an A record of 5 bytes', '1234 8100 0000 0001 0000 0000 01 61 00 0001 0001 00000000 0005 0102030405', 'rdlength', 23],
  ['a PTR whose name ends before its rdlength', '1234 8100 0000 0001 0000 0000 01 61 00 000c 0001 00000000 0004 01 62 00 00', 'rdata', 25],
  ['a PTR whose pointer leaves the message', '1234 8100 0000 0001 0000 0000 01 61 00 000c 0001 00000000 0002 c0ff', 'name pointer', 25],
  ['an additional record that is missing', '1234 0100 0000 0000 0000 0001', 'name', 12],
];
for (const [name, bytes, field, offset] of MALFORMED) {
  test(`malformed: ${name} is an error naming ${field} at offset ${offset}`, (t) => {
    throwsWire(t, () => parseDns(hex(bytes)), 'dns', field, offset);
  });
}

test('readDnsName reports where the name ends in place, before any pointer target', (t) => {
  const m = hex(`${HDR} 01 61 00 0001 0001 01 62 c00c`);
  t.deepEqual(readDnsName(m, 19), { name: 'b.a', end: 23 });
});

test('reverse names: built from and parsed to addresses; partial and padded names are not addresses', (t) => {
  t.is(reverseDnsName(parseIpv4Address('198.18.4.10')), '10.4.18.198.in-addr.arpa');
  t.is(parseReverseDnsName('10.4.18.198.IN-ADDR.ARPA.'), parseIpv4Address('198.18.4.10'));
  t.is(parseReverseDnsName('4.18.198.in-addr.arpa'), undefined);
  t.is(parseReverseDnsName('010.4.18.198.in-addr.arpa'), undefined);
  t.is(parseReverseDnsName('256.4.18.198.in-addr.arpa'), undefined);
});

test('tshark reads our query and our compressed response with the names and data we meant', (t) => {
  const response = message({
    qr: true, aa: true, ra: false,
    questions: [{ name: '10.4.18.198.in-addr.arpa', type: DNS_TYPE_PTR, class: DNS_CLASS_IN }],
    answers: [{ name: '10.4.18.198.in-addr.arpa', type: DNS_TYPE_PTR, class: DNS_CLASS_IN, ttl: 60, data: { kind: 'name', name: 'web1.ns1.appnet.test' } }],
  });
  const aResponse = message({
    id: 0x5678, qr: true, aa: true,
    questions: [{ name: 'web1.ns1.appnet.test', type: DNS_TYPE_A, class: DNS_CLASS_IN }],
    answers: [
      { name: 'web1.ns1.appnet.test', type: DNS_TYPE_CNAME, class: DNS_CLASS_IN, ttl: 60, data: { kind: 'name', name: 'db.ns1.appnet.test' } },
      { name: 'db.ns1.appnet.test', type: DNS_TYPE_A, class: DNS_CLASS_IN, ttl: 60, data: { kind: 'a', address: parseIpv4Address('198.18.4.11') } },
    ],
    additionals: [{ name: '', type: DNS_TYPE_OPT, class: 1232, ttl: 0, data: { kind: 'opaque', bytes: new Uint8Array(0) } }],
  });
  const payloads = [QUERY, encodeDns(response), encodeDns(aResponse)];
  const frames = payloads.map((p, i) => buildUdpFrame({
    srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: i === 0 ? '198.18.4.10' : '198.18.4.1',
    dstIp: i === 0 ? '198.18.4.1' : '198.18.4.10', srcPort: i === 0 ? 40000 : 53, dstPort: i === 0 ? 53 : 40000, payload: p,
  }));
  const dir = mkdtempSync(join(tmpdir(), 'appnet-dns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'dns.pcap');
  writeFileSync(file, writeCapture('pcap', frames.map((f, i) => ({
    tsNs: BigInt(i + 1) * 1_000_000n, point: 'port' as const, dir: 'out' as const, port: 1, vni: null, origLen: f.length, data: Buffer.from(f),
  }))));
  const rows = tsharkFields(file, ['dns.id', 'dns.flags.response', 'dns.flags.authoritative', 'dns.qry.name', 'dns.count.answers',
    'dns.a', 'dns.ptr.domain_name', 'dns.cname', 'dns.resp.ttl', 'dns.rr.udp_payload_size', '_ws.malformed', '_ws.expert']);
  t.deepEqual(rows, [
    ['0x1234', '0', '', 'example.com', '0', '', '', '', '', '', '', ''],
    ['0x1234', '1', '1', '10.4.18.198.in-addr.arpa', '1', '', 'web1.ns1.appnet.test', '', '60', '', '', ''],
    ['0x5678', '1', '1', 'web1.ns1.appnet.test', '2', '198.18.4.11', '', 'db.ns1.appnet.test', '60,60', '1232', '', ''],
  ]);
});
