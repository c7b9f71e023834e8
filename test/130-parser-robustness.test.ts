// Property tests: every TypeScript parser of outside bytes or text, fed arbitrary input, either returns or
// throws its own error type (WireError, CaptureFileError, KeylogError, ConfigError, InvalidArgumentError).
// Anything else (a TypeError, a RangeError from a DataView, a hang) is a parser bug. Inputs start from
// valid messages and are then cut and flipped, so the properties reach past the first length check.
// The counterexamples these properties found are kept below as literal regression cases.
import test from 'ava';
import fc from 'fast-check';
import * as W from '../dataplane/wire/index.ts';
import { CaptureFileError, readCapture, readPcap, readPcapng, writeCapture } from '../dataplane/pcap/index.ts';
import { decodeFrame, formatLayers, KeylogError, parseKeylog, summary } from '../dataplane/decode/index.ts';
import * as M from '../dataplane/link/messages.ts';
import { ConfigError, parseDaemonConfig } from '../control/daemon/config.ts';
import { InvalidArgumentError, parseStoreUrl } from '../control/store/index.ts';
import { BadRequest } from '../control/errors.ts';
import { parseCidr } from '../control/net/ipv4-cidr.ts';
import { parseFloatingPool } from '../control/networks/network.ts';
import { parseLinkPool } from '../control/connections/link-pool.ts';
import { bytes, frames, mutated, onlyThrows } from './helpers/properties.ts';

const RUNS = { numRuns: 2000 };
const isWire = (e: unknown): boolean => e instanceof W.WireError;

const WIRE_PARSERS: Record<string, (b: Uint8Array) => unknown> = {
  parseEthernet: W.parseEthernet, parseArp: W.parseArp, parseIpv4: W.parseIpv4, parseUdp: W.parseUdp,
  parseTcp: W.parseTcp, parseIcmpv4: W.parseIcmpv4, parseVxlan: W.parseVxlan, vxlanDecap: W.vxlanDecap,
  parseDhcp: W.parseDhcp, parseDns: W.parseDns, parseDnsHeader: W.parseDnsHeader,
  parseLinkDataHeader: W.parseLinkDataHeader, parseInitiation: M.parseInitiation,
  parseResponse: M.parseResponse, parseCookieReply: M.parseCookieReply, linkMessageType: M.linkMessageType,
  groCandidate: W.groCandidate,
};

for (const [name, parse] of Object.entries(WIRE_PARSERS)) {
  test(`${name}: arbitrary bytes give a result or a WireError`, (t) => {
    fc.assert(fc.property(fc.oneof(bytes(600), mutated(frames)), onlyThrows(parse, isWire)), RUNS);
    t.pass();
  });
}

test('wire parsers: the layers inside valid frames, cut and flipped, give a result or a WireError', (t) => {
  // Each frame's inner layers handed to the parser of that layer, so DHCP, DNS and ICMP see their own
  // bytes with the lengths and checksums around them mostly right.
  const inner = (f: Uint8Array): Uint8Array[] => [f.subarray(14), f.subarray(34), f.subarray(42)];
  fc.assert(fc.property(mutated(frames).map(inner), (layers) => {
    for (const b of layers) for (const parse of Object.values(WIRE_PARSERS)) onlyThrows(parse, isWire)(b);
  }), RUNS);
  t.pass();
});

test('readDnsName: any offset, in range or not, gives a name or a WireError', (t) => {
  const offset = fc.oneof(fc.integer({ min: -4, max: 700 }), fc.double(), fc.constant(Number.NaN));
  fc.assert(fc.property(bytes(600), offset, (b, at) => onlyThrows((x: Uint8Array) => W.readDnsName(x, at), isWire)(b)), RUNS);
  t.pass();
});

test('readDnsName regression: a negative offset throws instead of looping until the heap is exhausted', (t) => {
  // Found by the property above: bytes[-1] is undefined, which passed every label check.
  const err = t.throws(() => W.readDnsName(new Uint8Array([0]), -1), { instanceOf: W.WireError });
  t.regex(err?.message ?? '', /offset -1 is not a byte offset/);
});

test('the address parsers: arbitrary text gives an address or a WireError', (t) => {
  fc.assert(fc.property(fc.string({ maxLength: 40 }), (s) => {
    onlyThrows(W.parseIpv4Address, isWire)(s);
    onlyThrows(W.parseMac, isWire)(s);
  }), RUNS);
  t.pass();
});

const isCapture = (e: unknown): boolean => e instanceof CaptureFileError;
const captures = fc.tuple(fc.constantFrom('pcap', 'pcap-ns', 'pcapng') as fc.Arbitrary<'pcap' | 'pcap-ns' | 'pcapng'>,
  fc.array(fc.record({ data: bytes(200), point: fc.constantFrom('wire', 'port:a', 'vni:42') }), { maxLength: 4 }))
  .map(([format, recs]) => new Uint8Array(writeCapture(format,
    recs.map((r, i) => ({ tsNs: BigInt(i) * 1000n, point: r.point, data: r.data, origLen: r.data.length })))));

for (const [name, read] of Object.entries({ readPcap, readPcapng, readCapture })) {
  test(`${name}: arbitrary and damaged capture files give packets or a CaptureFileError`, (t) => {
    fc.assert(fc.property(fc.oneof(bytes(400), mutated(captures)), onlyThrows(read, isCapture)), RUNS);
    t.pass();
  });
}

test('decodeFrame: arbitrary and damaged frames decode without reaching its last-resort catch', (t) => {
  // decodeFrame never throws (a capture viewer must not die on one packet); a codec error that escapes its
  // layer ends in a `decoder error` layer, which is the bug this property looks for.
  fc.assert(fc.property(fc.oneof(bytes(600), mutated(frames)), (f) => {
    const layers = decodeFrame(f);
    const text = formatLayers(layers) + summary(layers);
    if (text.includes('decoder error')) throw new Error(text);
  }), RUNS);
  t.pass();
});

test('parseKeylog: arbitrary text gives keys or a KeylogError', (t) => {
  const line = fc.oneof(fc.string({ maxLength: 120 }),
    fc.tuple(fc.stringMatching(/^[0-9a-fA-F]{0,10}$/), fc.stringMatching(/^[0-9a-f]{0,70}$/)).map(([i, k]) => `APPNET_LINK_KEY ${i} ${k}`));
  fc.assert(fc.property(fc.array(line, { maxLength: 5 }).map((l) => l.join('\n')), onlyThrows(parseKeylog, (e) => e instanceof KeylogError)), RUNS);
  t.pass();
});

test('parseStoreUrl: arbitrary text gives a location or an InvalidArgumentError', (t) => {
  const url = fc.oneof(fc.string(), fc.tuple(fc.constantFrom('sqlite:', 'sqlite://', 'sqlite:///', 'etcd://', 'etcd+https://', 'http://', ''), fc.string())
    .map(([a, b]) => a + b));
  fc.assert(fc.property(url, onlyThrows(parseStoreUrl, (e) => e instanceof InvalidArgumentError)), RUNS);
  t.pass();
});

// A valid config with every optional part present; the property replaces one field at a time.
const VALID_CONFIG = {
  host: 'h1', store: 'sqlite:/tmp/s.db', underlay: { address: '198.18.0.1', port: 4789, mtu: 1500 },
  api: { address: '127.0.0.1', port: 7878 }, tokens: { 'aaaaaaaaaaaaaaaaaaaa': 'system' },
  vnis: [{ vni: 42, mtu: 1400, flood: ['198.18.0.2'], encrypted: true }],
  ports: [{ name: 'p0', kind: 'tap', vni: 42, mac: '02:00:00:00:00:01', ipv4: '10.0.0.2',
    filter: { localAddress: '10.0.0.2', peerAddress: '10.0.0.3', protocol: 'tcp', port: 80, side: 'outbound' } }],
  link: { enabled: true, port: 51830, peers: [{ address: '198.18.0.2', publicKey: `${'A'.repeat(43)}=` }], rekeyAfterSeconds: 60 },
  offloads: { udpGso: true }, uplink: { device: 'up0', mtu: 1500 }, nat: { capacity: 1024 }, dnsUpstream: '198.18.0.9:53',
  dnsZone: 'appnet.internal', linkPool: '198.19.128.0/20', usageIntervalSeconds: 60,
};

/** Every path to a value inside `v`, e.g. ['ports', 0, 'filter', 'port']. */
function paths(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (typeof v !== 'object' || v === null) return [at];
  return [at, ...Object.entries(v).flatMap(([k, x]) => paths(x, [...at, Array.isArray(v) ? Number(k) : k]))];
}

function replaced(v: unknown, path: (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  const copy = (Array.isArray(v) ? [...v] : { ...(v as object) }) as Record<string | number, unknown>;
  copy[path[0]] = replaced(copy[path[0]], path.slice(1), value);
  return copy;
}

test('parseDaemonConfig: the valid config parses, and any one field replaced by anything gives a config or a ConfigError', (t) => {
  t.is(parseDaemonConfig(VALID_CONFIG).ports[0].filter?.port, 80);
  const anything = fc.anything({ withBigInt: true, withNullPrototype: true, withBoxedValues: true, maxDepth: 2 });
  const config = fc.tuple(fc.constantFrom(...paths(VALID_CONFIG)), anything).map(([p, v]) => replaced(VALID_CONFIG, p, v));
  fc.assert(fc.property(config, onlyThrows(parseDaemonConfig, (e) => e instanceof ConfigError)), { numRuns: 3000 });
  t.pass();
});

test('parseDaemonConfig regression: a BigInt field is a ConfigError naming the field, not a TypeError from JSON.stringify', (t) => {
  // Found by the property above ({"api":{"port":{"":[0n]}}}): the message's JSON.stringify threw first.
  const err = t.throws(() => parseDaemonConfig({ ...VALID_CONFIG, api: { port: 7878n } }), { instanceOf: ConfigError });
  t.is(err?.message, 'config: api.port: must be an integer in 1..65535, got "7878n"');
  const filter = { ...VALID_CONFIG.ports[0].filter, port: 80n };
  const ferr = t.throws(() => parseDaemonConfig({ ...VALID_CONFIG, ports: [{ ...VALID_CONFIG.ports[0], filter }] }), { instanceOf: ConfigError });
  t.regex(ferr?.message ?? '', /ports\[0\]\.filter\.port.*"80n"/);
});

test('netblock parsers (API netblocks, the floating and link pools): anything gives a CIDR or a 400 BadRequest', (t) => {
  const cidrText = fc.tuple(fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 5 }), fc.oneof(fc.nat(40), fc.string({ maxLength: 4 })))
    .map(([o, p]) => `${o.join('.')}/${p}`);
  const input = fc.oneof(cidrText, fc.string({ maxLength: 30 }), fc.anything({ withBigInt: true, withNullPrototype: true, maxDepth: 1 }));
  const isBadRequest = (e: unknown) => e instanceof BadRequest;
  fc.assert(fc.property(input, (v) => {
    onlyThrows(parseCidr, isBadRequest)(v);
    onlyThrows(parseFloatingPool, isBadRequest)(v);
    onlyThrows(parseLinkPool, isBadRequest)(v);
  }), RUNS);
  t.pass();
});

test('quote regression: an object without a prototype holding a BigInt is quoted, not a TypeError', (t) => {
  // Found by the property above: parseCidr's message called String() on it, which throws.
  const v = Object.assign(Object.create(null), { n: 0n });
  const err = t.throws(() => parseCidr(v), { instanceOf: BadRequest });
  t.regex(err?.message ?? '', /cannot parse netblock: \[object Object\] is not a string/);
});
