// Property tests: parse(emit(x)) = x for every codec that has both sides, over arbitrary high-level forms
// (test/helpers/properties.ts): wire protocols, link handshake messages, capture files, store URLs.
import test from 'ava';
import { deepStrictEqual } from 'node:assert';
import fc from 'fast-check';
import * as W from '../dataplane/wire/index.ts';
import * as M from '../dataplane/link/messages.ts';
import { readCapture, writeCapture, type CaptureFormat } from '../dataplane/pcap/index.ts';
import { parseStoreUrl } from '../control/store/index.ts';
import {
  arpRepr, bytes, cookieReplyRepr, dhcpRepr, dnsMessage, emitArpBytes, emitEthernetBytes, emitIcmpv4Bytes, emitIpv4Bytes,
  emitVxlanBytes, icmpv4Repr, rec, initiationRepr, ipv4Repr, mac, responseRepr, tcpRepr, udpRepr,
} from './helpers/properties.ts';

const RUNS = { numRuns: 1000 };

/** Asserts `parse(emit(x))` deep-equals `x` (typed arrays compared by content) for every generated x. */
function roundTrip<T>(arb: fc.Arbitrary<T>, emit: (x: T) => Uint8Array, parse: (b: Uint8Array) => unknown, strip: (p: any) => unknown = (p) => p): void {
  fc.assert(fc.property(arb, (x) => deepStrictEqual(strip(parse(emit(x))), x)), RUNS);
}

test('ethernet: parse(emit(x)) = x', (t) => {
  roundTrip(rec({ dst: mac, src: mac, ethertype: fc.integer({ min: 0, max: 0xffff }), payload: bytes(100) }), emitEthernetBytes, W.parseEthernet);
  t.pass();
});

test('arp: parse(emit(x)) = x', (t) => {
  roundTrip(arpRepr, emitArpBytes, W.parseArp);
  t.pass();
});

test('ipv4: parse(emit(x)) = x, options and fragment fields included', (t) => {
  roundTrip(ipv4Repr(bytes(200)), emitIpv4Bytes, W.parseIpv4);
  t.pass();
});

test('udp: parse(emit(x)) = x with the checksum verified against the pseudo-header', (t) => {
  const ip = rec({ src: fc.integer({ min: 0, max: 0xffffffff }), dst: fc.integer({ min: 0, max: 0xffffffff }) });
  fc.assert(fc.property(udpRepr(bytes(200)), ip, (u, h) => {
    const buf = new Uint8Array(W.udpBufferLen(u));
    W.emitUdp(u, buf, 0, h);
    const { checksum, ...parsed } = W.parseUdp(buf, h);
    deepStrictEqual(parsed, u);
    // A computed checksum of 0 is sent as 0xffff (RFC 768), so 'zero' never comes back from a checksummed emit.
    deepStrictEqual(checksum, 'verified');
  }), RUNS);
  t.pass();
});

test('tcp: parse(emit(x)) = x with the checksum verified', (t) => {
  const h = { src: 0xc6120001, dst: 0xc6120002 };
  roundTrip(tcpRepr, (r) => {
    const buf = new Uint8Array(W.tcpBufferLen(r));
    W.emitTcp(r, buf, 0, h);
    return buf;
  }, (b) => W.parseTcp(b, h));
  t.pass();
});

test('icmpv4: parse(emit(x)) = x for echo, destination unreachable and time exceeded', (t) => {
  roundTrip(icmpv4Repr, emitIcmpv4Bytes, W.parseIcmpv4);
  t.pass();
});

test('vxlan: parse(emit(x)) = x', (t) => {
  roundTrip(rec({ vni: fc.integer({ min: 0, max: W.VXLAN_MAX_VNI }), payload: bytes(100) }), emitVxlanBytes, W.parseVxlan);
  t.pass();
});

test('link data header: parse(emit(x)) = x over the whole counter range', (t) => {
  const header = rec({
    receiver: fc.integer({ min: 0, max: 0xffffffff }),
    counter: fc.bigInt({ min: 0n, max: W.REJECT_AFTER_MESSAGES - 1n }),
  });
  roundTrip(header, (h) => {
    const buf = new Uint8Array(32); // a data message is at least its header and the 16-byte tag
    W.emitLinkDataHeader(h, buf, 0);
    return buf;
  }, W.parseLinkDataHeader);
  t.pass();
});

test('link handshake messages: parse(emit(x)) = x for initiation, response and cookie reply', (t) => {
  roundTrip(initiationRepr, M.emitInitiation, M.parseInitiation);
  roundTrip(responseRepr, M.emitResponse, M.parseResponse);
  roundTrip(cookieReplyRepr, M.emitCookieReply, M.parseCookieReply);
  t.pass();
});

test('dhcp: parse(emit(x)) = x, options in wire order', (t) => {
  roundTrip(dhcpRepr, W.encodeDhcp, W.parseDhcp);
  t.pass();
});

test('dns: parse(emit(x)) = x across every section, names compressed on write', (t) => {
  roundTrip(dnsMessage, W.encodeDns, W.parseDns);
  t.pass();
});

test('capture files: read(write(records)) gives the records back in pcap, pcap-ns and pcapng', (t) => {
  const record = rec({
    tsUs: fc.bigInt({ min: 0n, max: (1n << 32n) * 1_000_000n - 1n }),
    extraNs: fc.bigInt({ min: 0n, max: 999n }),
    data: bytes(300),
    cut: fc.nat(50),
    point: fc.constantFrom('wire', 'port:a', 'vni:42'),
  });
  const format = fc.constantFrom<CaptureFormat>('pcap', 'pcap-ns', 'pcapng');
  fc.assert(fc.property(format, fc.array(record, { maxLength: 5 }), (f, recs) => {
    // pcap keeps microseconds; pcap-ns and pcapng (our writer's if_tsresol) keep nanoseconds.
    const records = recs.map((r) => ({
      tsNs: r.tsUs * 1000n + (f === 'pcap' ? 0n : r.extraNs), point: r.point, data: r.data, origLen: r.data.length + r.cut,
    }));
    const read = readCapture(new Uint8Array(writeCapture(f, records)));
    deepStrictEqual(read.format, f);
    deepStrictEqual(read.packets.map((p) => ({ tsNs: p.tsNs, data: p.data, origLen: p.origLen })),
      records.map((r) => ({ tsNs: r.tsNs, data: r.data, origLen: r.origLen })));
    if (f === 'pcapng') deepStrictEqual(read.packets.map((p) => p.point), records.map((r) => r.point));
  }), { numRuns: 500 });
  t.pass();
});

test('store URLs: an sqlite path and an etcd endpoint list come back from the URL made of them', (t) => {
  // A path that starts with '//' would read as a host name after sqlite:, which the parser refuses.
  const path = fc.stringMatching(/^\/[A-Za-z0-9._-][A-Za-z0-9._/-]{0,40}$/);
  fc.assert(fc.property(path, (p) => {
    deepStrictEqual(parseStoreUrl(`sqlite:${p}`), { kind: 'sqlite', path: p });
    deepStrictEqual(parseStoreUrl(`sqlite://${p}`), { kind: 'sqlite', path: p });
  }), RUNS);
  const endpoint = fc.tuple(fc.stringMatching(/^[a-z0-9.-]{1,20}$/), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `${h}:${p}`);
  fc.assert(fc.property(fc.array(endpoint, { minLength: 1, maxLength: 4 }), (eps) => {
    deepStrictEqual(parseStoreUrl(`etcd://${eps.join(',')}`), { kind: 'etcd', endpoints: eps, tls: false });
    deepStrictEqual(parseStoreUrl(`etcds://${eps.join(',')}`), { kind: 'etcd', endpoints: eps, tls: true });
  }), RUNS);
  t.pass();
});
