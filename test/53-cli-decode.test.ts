// `appnet decode` as a user runs it: the real CLI in a child process on capture files we wrote.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import sodium from 'libsodium-wrappers';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  emitEthernet, emitIcmpv4, emitIpv4, emitUdp, ETHERTYPE_IPV4, IPPROTO_ICMP, IPPROTO_UDP, parseIpv4Address, parseMac,
  vxlanEncap,
} from '../dataplane/wire/index.ts';
import { writeCapture, type CaptureFormat, type CaptureRecord } from '../dataplane/pcap/index.ts';
import { run } from './helpers/run.ts';

await sodium.ready;

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function appnet(args: string[]) {
  return run(process.execPath, ['--import', 'tsx', 'control/cli/appnet.ts', ...args], { cwd: ROOT, reject: false, timeoutMs: 60_000 });
}

function ipFrame(protocol: number, src: string, dst: string, payload: Uint8Array): Uint8Array {
  const ip = new Uint8Array(20 + payload.length);
  emitIpv4({ dscp: 0, ecn: 0, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol,
    src: parseIpv4Address(src), dst: parseIpv4Address(dst), options: new Uint8Array(0), payload }, ip);
  const f = new Uint8Array(14 + ip.length);
  emitEthernet({ src: parseMac('02:00:00:00:00:01'), dst: parseMac('02:00:00:00:00:02'), ethertype: ETHERTYPE_IPV4, payload: ip }, f);
  return f;
}

function ping(seq: number): Uint8Array {
  const m = new Uint8Array(8 + 8);
  emitIcmpv4({ type: 'echo-request', id: 7, seq, data: new Uint8Array(8) }, m);
  return ipFrame(IPPROTO_ICMP, '10.0.0.1', '10.0.0.2', m);
}

function udp(dstPort: number, payload: Uint8Array): Uint8Array {
  const u = new Uint8Array(8 + payload.length);
  emitUdp({ srcPort: dstPort === 4789 ? 50000 : dstPort, dstPort, payload }, u);
  return ipFrame(IPPROTO_UDP, '198.18.0.1', '198.18.0.2', u);
}

const KEY = new Uint8Array(32).fill(0x42);

function linkData(receiver: number, counter: bigint, plaintext: Uint8Array): Uint8Array {
  const header = new Uint8Array(16);
  header[0] = 4;
  new DataView(header.buffer).setUint32(4, receiver, true);
  new DataView(header.buffer).setBigUint64(8, counter, true);
  const nonce = new Uint8Array(12);
  nonce.set(header.subarray(8), 4);
  const sealed = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, header, null, nonce, KEY);
  return Uint8Array.from([...header, ...sealed]);
}

const T0 = 1_700_000_000_000_000_000n;
const RECORDS: CaptureRecord[] = [
  { tsNs: T0 + 1n, point: 'port:inst-a', data: ping(1), origLen: ping(1).length },
  { tsNs: T0 + 1_000_000_002n, point: 'wire', data: udp(4789, vxlanEncap(42, ping(2))), origLen: 0 },
  { tsNs: T0 + 2_000_000_003n, point: 'wire', data: udp(51830, linkData(0x11223344, 9n, vxlanEncap(42, ping(3)))), origLen: 0 },
].map((r) => ({ ...r, origLen: r.data.length }));

function files(t: ExecutionContext, format: CaptureFormat = 'pcapng') {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-decode-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bytes = writeCapture(format, RECORDS);
  const file = join(dir, `cap.${format}`);
  writeFileSync(file, bytes);
  return { dir, file, bytes };
}

test('decode --summary: one line per packet with number, time, point and length', async (t) => {
  const { file } = files(t);
  const r = await appnet(['decode', '--summary', file]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
  t.deepEqual(r.stdout.trimEnd().split('\n'), [
    '#1 2023-11-14T22:13:20.000000001Z port:inst-a length 50 IP 10.0.0.1 > 10.0.0.2: ICMP echo request id 7 seq 1',
    '#2 2023-11-14T22:13:21.000000002Z wire length 100 198.18.0.1 > 198.18.0.2 VXLAN vni 42: 02:00:00:00:00:01 > 02:00:00:00:00:02: IP 10.0.0.1 > 10.0.0.2: ICMP echo request id 7 seq 2',
    '#3 2023-11-14T22:13:22.000000003Z wire length 132 198.18.0.1 > 198.18.0.2 LINK data encrypted, receiver=0x11223344, counter=9, length 90',
  ]);
});

test('decode with --keylog decrypts link data; -c limits the packets; default is the layered view', async (t) => {
  const { dir, file } = files(t, 'pcap-ns');
  const keylog = join(dir, 'keys.log');
  writeFileSync(keylog, `# exported by appnet keys export\nAPPNET_LINK_KEY 11223344 ${Buffer.from(KEY).toString('hex')}\n`);
  const s = await appnet(['decode', '--summary', '--keylog', keylog, file]);
  t.is(s.code, 0, s.stderr);
  t.regex(s.stdout.trimEnd().split('\n')[2],
    /^#3 \S+ length 132 198\.18\.0\.1 > 198\.18\.0\.2 LINK data decrypted, receiver=0x11223344, counter=9: VXLAN vni 42: .* ICMP echo request id 7 seq 3$/);
  const one = await appnet(['decode', '-c', '1', file]);
  t.is(one.code, 0, one.stderr);
  t.deepEqual(one.stdout.trimEnd().split('\n'), [
    '#1 2023-11-14T22:13:20.000000001Z length 50',
    '  Ethernet: src=02:00:00:00:00:01 dst=02:00:00:00:00:02 type=0x0800 typeName=IPv4',
    '    IPv4: src=10.0.0.1 dst=10.0.0.2 protocol=1 protocolName=ICMP ttl=64 id=1 length=36 headerLength=20 flags=DF fragmentOffset=0 checksum=ok',
    '      ICMP: type=8 code=0 typeName="echo request" id=7 seq=1 dataLength=8 checksum=ok',
  ]);
  const badKeys = join(dir, 'bad.log');
  writeFileSync(badKeys, `# ok\nAPPNET_LINK_KEY 1122 00\n`);
  const bad = await appnet(['decode', '--keylog', badKeys, file]);
  t.is(bad.code, 1);
  t.is(bad.stderr, `appnet: ${badKeys}: keylog line 2: receiver index "1122" is not 8 hex digits\n`);
});

test('decode --json (global option): an array of packets with their layers', async (t) => {
  const { file } = files(t, 'pcap');
  const r = await appnet(['--json', 'decode', file]);
  t.is(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { number: number; tsNs: string; point: null; length: number; layers: { name: string; fields: Record<string, unknown> }[] }[];
  t.is(rows.length, 3);
  t.is(rows[0].tsNs, String(T0)); // microsecond file: the nanosecond digit is gone
  t.deepEqual(rows[1].layers.map((l) => l.name), ['eth', 'ipv4', 'udp', 'vxlan', 'eth', 'ipv4', 'icmp']);
  t.is(rows[1].layers[3].fields.vni, 42);
  t.is(rows[2].layers[3].fields.state, 'encrypted');
  t.is(rows[2].point, null);
});

test('decode on a truncated file: the whole packets, then exit 1 and one stderr line with the offset', async (t) => {
  const { dir, bytes } = files(t);
  const cut = join(dir, 'cut.pcapng');
  writeFileSync(cut, bytes.subarray(0, bytes.length - 7));
  const r = await appnet(['decode', '--summary', cut]);
  t.is(r.code, 1);
  const lines = r.stderr.trimEnd().split('\n');
  t.is(lines.length, 1);
  t.regex(lines[0], new RegExp(`^appnet: ${cut}: pcapng: block at offset \\d+ claims length \\d+ but the file ends at ${bytes.length - 7}$`));
  t.is(r.stdout.trimEnd().split('\n').length, 2, 'the two whole packets before the cut');
  const garbage = join(dir, 'garbage.pcap');
  writeFileSync(garbage, 'not a capture');
  const g = await appnet(['decode', garbage]);
  t.is(g.code, 1);
  t.regex(g.stderr, /^appnet: .*garbage\.pcap: capture: unknown magic 0x6e6f7420 at offset 0 .*\n$/);
  const missing = await appnet(['decode', join(dir, 'nope.pcap')]);
  t.is(missing.code, 1);
  t.is(missing.stderr, `appnet: ${join(dir, 'nope.pcap')}: no such file\n`);
});
