// Capture files: our writers read back by tshark/tcpdump, our reader on files tcpdump/editcap wrote, and
// every truncation and corruption answered with an error that names the offset.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BOOTREQUEST, DHCP_FLAG_BROADCAST, DHCP_OPT_HOSTNAME, DHCP_OPT_PARAMETER_LIST, DHCPDISCOVER, dhcpOption,
  emitArp, emitEthernet, emitIcmpv4, emitIpv4, emitTcp, emitUdp, encodeDhcp, ETHERTYPE_ARP, ETHERTYPE_IPV4,
  IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, parseIpv4Address, parseMac, TCP_SYN, vxlanEncap,
} from '../dataplane/wire/index.ts';
import {
  CaptureFile, CaptureFileError, createCaptureWriter, readCapture, writeCapture,
  type Capture, type CaptureFormat, type CaptureRecord,
} from '../dataplane/pcap/index.ts';
import { decodeFrame, type Layer } from '../dataplane/decode/index.ts';
import { run, runIn, spawnIn, stopProcess } from './helpers/run.ts';

// --- frames built with the wire codecs --------------------------------------------------------------

const ip4 = parseIpv4Address;
const MAC_A = parseMac('02:00:00:00:00:01');
const MAC_B = parseMac('02:00:00:00:00:02');

function eth(ethertype: number, payload: Uint8Array, src = MAC_A, dst = MAC_B): Uint8Array {
  const f = new Uint8Array(14 + payload.length);
  emitEthernet({ dst, src, ethertype, payload }, f);
  return f;
}

function ipv4(protocol: number, src: string, dst: string, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  emitIpv4({ dscp: 0, ecn: 0, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64,
    protocol, src: ip4(src), dst: ip4(dst), options: new Uint8Array(0), payload }, p);
  return p;
}

function icmpEcho(src: string, dst: string, id: number, seq: number): Uint8Array {
  const m = new Uint8Array(8 + 32);
  emitIcmpv4({ type: 'echo-request', id, seq, data: new Uint8Array(32).fill(0x61) }, m);
  return eth(ETHERTYPE_IPV4, ipv4(IPPROTO_ICMP, src, dst, m));
}

function udp(src: string, dst: string, srcPort: number, dstPort: number, payload: Uint8Array, checksum = true): Uint8Array {
  const u = new Uint8Array(8 + payload.length);
  emitUdp({ srcPort, dstPort, payload }, u, 0, checksum ? { src: ip4(src), dst: ip4(dst) } : undefined);
  return eth(ETHERTYPE_IPV4, ipv4(IPPROTO_UDP, src, dst, u));
}

function tcpSyn(): Uint8Array {
  const options = Uint8Array.of(2, 4, 0x05, 0xb4); // MSS 1460
  const s = new Uint8Array(24);
  emitTcp({ srcPort: 40000, dstPort: 80, seq: 1000, ack: 0, flags: TCP_SYN, window: 64240, urgent: 0, options,
    payload: new Uint8Array(0) }, s, 0, { src: ip4('10.0.0.1'), dst: ip4('10.0.0.2') });
  return eth(ETHERTYPE_IPV4, ipv4(IPPROTO_TCP, '10.0.0.1', '10.0.0.2', s));
}

function arpRequest(): Uint8Array {
  const a = new Uint8Array(28);
  emitArp({ operation: 'request', senderMac: MAC_A, senderIp: ip4('10.0.0.1'), targetMac: new Uint8Array(6),
    targetIp: ip4('10.0.0.2') }, a);
  return eth(ETHERTYPE_ARP, a, MAC_A, parseMac('ff:ff:ff:ff:ff:ff'));
}

function vxlanIcmp(): Uint8Array {
  const inner = icmpEcho('10.0.0.1', '10.0.0.2', 7, 1);
  return udp('198.18.0.1', '198.18.0.2', 50000, 4789, vxlanEncap(42, inner), false);
}

function dhcpDiscover(): Uint8Array {
  const msg = encodeDhcp({
    op: BOOTREQUEST, htype: 1, hops: 0, xid: 0x3903f326, secs: 0, flags: DHCP_FLAG_BROADCAST,
    ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: MAC_A, sname: '', file: '',
    options: [dhcpOption.messageType(DHCPDISCOVER), dhcpOption.clientIdMac(MAC_A),
      dhcpOption.codes(DHCP_OPT_PARAMETER_LIST, [1, 3, 6, 15, 26]), dhcpOption.text(DHCP_OPT_HOSTNAME, 'inst-a')],
  });
  return udp('0.0.0.0', '255.255.255.255', 68, 67, msg);
}

const T0 = 1_700_000_000_123_456_789n;
const FRAMES: [string, Uint8Array][] = [
  ['port:inst-a', icmpEcho('10.0.0.1', '10.0.0.2', 7, 1)],
  ['port:inst-a', udp('10.0.0.1', '10.0.0.2', 5000, 6000, new TextEncoder().encode('hello'))],
  ['vni:42', tcpSyn()],
  ['vni:42', arpRequest()],
  ['wire', vxlanIcmp()],
  ['port:inst-b', dhcpDiscover()],
];
const RECORDS: CaptureRecord[] = FRAMES.map(([point, data], i) => ({
  tsNs: T0 + BigInt(i) * 1_000_333_333n, point, data, origLen: data.length,
}));
const FORMATS: CaptureFormat[] = ['pcap', 'pcap-ns', 'pcapng'];

function tmp(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-pcap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Timestamp at the resolution of the format. */
function atResolution(format: CaptureFormat, tsNs: bigint): bigint {
  return format === 'pcap' ? (tsNs / 1000n) * 1000n : tsNs;
}

// tshark's view of a file and our decoder's, as the same rows of strings.
const TSHARK_FIELDS = ['frame.len', 'ip.src', 'ip.dst', 'udp.dstport', 'vxlan.vni', 'icmp.type', 'dhcp.option.dhcp',
  'tcp.flags.syn', 'tcp.flags.ack', 'arp.opcode', 'frame.time_epoch'];

async function tsharkRows(file: string, extra: string[] = []): Promise<string[][]> {
  const args = ['-r', file, '-T', 'fields', '-E', 'separator=\t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const f of [...TSHARK_FIELDS, ...extra]) args.push('-e', f);
  const { stdout } = await run('tshark', args);
  return stdout.trimEnd().split('\n').map((l) => l.split('\t'));
}

/** tcpdump prints inner VXLAN packets on a line of their own: count the lines that start a packet. */
function packetLines(tcpdumpOut: string): number {
  return tcpdumpOut.split('\n').filter((l) => /^\d\d:\d\d:\d\d\.\d+ /.test(l)).length;
}

function all(layers: Layer[], name: string, key: string): string {
  return layers.filter((l) => l.name === name).map((l) => String(l.fields[key])).join(',');
}

function ourRow(p: Capture['packets'][number]): string[] {
  const layers = decodeFrame(p.data);
  const tcp = layers.find((l) => l.name === 'tcp');
  const arp = layers.find((l) => l.name === 'arp');
  const flag = (name: string) => (tcp === undefined ? '' : String(tcp.fields.flagNames).split(',').includes(name) ? '1' : '0');
  const dhcp = layers.find((l) => l.name === 'dhcp');
  const secs = p.tsNs / 1_000_000_000n;
  return [
    String(p.origLen), all(layers, 'ipv4', 'src'), all(layers, 'ipv4', 'dst'), all(layers, 'udp', 'dstPort'),
    all(layers, 'vxlan', 'vni'), all(layers, 'icmp', 'type'), dhcp === undefined ? '' : String(dhcp.fields.messageType),
    flag('SYN'), flag('ACK'), arp === undefined ? '' : arp.fields.operation === 'request' ? '1' : '2',
    `${secs}.${(p.tsNs % 1_000_000_000n).toString().padStart(9, '0')}`,
  ];
}

// --- writers -> tshark / tcpdump -----------------------------------------------------------------------

for (const format of FORMATS) {
  for (const byteOrder of ['le', 'be'] as const) {
    test(`${format} (${byteOrder}) written by us: tshark and tcpdump read the same packets and fields as our decoder`, async (t) => {
      const file = join(tmp(t), `cap.${format}`);
      writeFileSync(file, writeCapture(format, RECORDS, { byteOrder, comment: 'appnet test capture' }));
      const capture = readCapture(readFileSync(file));
      t.is(capture.format, format);
      t.is(capture.linktype, 1);
      t.is(capture.packets.length, RECORDS.length);
      capture.packets.forEach((p, i) => {
        t.deepEqual(p.data, RECORDS[i].data);
        t.is(p.tsNs, atResolution(format, RECORDS[i].tsNs));
        t.is(p.point, format === 'pcapng' ? RECORDS[i].point : undefined);
      });
      const extra = format === 'pcapng' ? ['frame.interface_name'] : [];
      const theirs = await tsharkRows(file, extra);
      const ours = capture.packets.map((p) => [...ourRow(p), ...(format === 'pcapng' ? [p.point ?? ''] : [])]);
      t.deepEqual(theirs, ours);
      // Spot-check the decoder agrees with what we built, not just with tshark.
      t.is(ours[4][1], '198.18.0.1,10.0.0.1');
      t.is(ours[4][4], '42');
      t.is(ours[5][6], '1');
      if (format === 'pcapng') t.deepEqual(theirs.map((r) => r[r.length - 1]), RECORDS.map((r) => r.point));
      const dump = await run('tcpdump', ['-nr', file]);
      t.is(packetLines(dump.stdout), RECORDS.length);
      t.regex(dump.stdout, /IP 10\.0\.0\.1 > 10\.0\.0\.2: ICMP echo request, id 7, seq 1/);
      t.regex(dump.stdout, /VXLAN, flags \[I\] \(0x08\), vni 42/);
      t.regex(dump.stdout, /DHCP, Request from 02:00:00:00:00:01/);
    });
  }
}

test('pcapng: section comment, per-packet comment and one interface per point as tshark sees them', async (t) => {
  const file = join(tmp(t), 'c.pcapng');
  const records = RECORDS.slice(0, 3).map((r, i) => (i === 1 ? { ...r, comment: 'second packet' } : r));
  writeFileSync(file, writeCapture('pcapng', records, { comment: 'appnet capture' }));
  const c = readCapture(readFileSync(file));
  t.is(c.comment, 'appnet capture');
  t.is(c.packets[1].comment, 'second packet');
  t.deepEqual(c.interfaces?.map((i) => i.name), ['port:inst-a', 'vni:42']);
  const { stdout } = await run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.comment', '-e', 'frame.interface_id']);
  t.deepEqual(stdout.trimEnd().split('\n').map((l) => l.split('\t')), [['', '0'], ['second packet', '0'], ['', '1']]);
  const info = await run('capinfos', ['-T', '-r', '-k', file]);
  t.regex(info.stdout, /appnet capture/);
});

test('a live capture file is readable by tcpdump after every record, and the writer is streamable', async (t) => {
  for (const format of FORMATS) {
    const file = join(tmp(t), `live.${format}`);
    // Declaring the first point makes the pcapng header readable by libpcap before any packet.
    const cf = new CaptureFile(file, format, { points: ['port:inst-a'] });
    t.is((await run('tcpdump', ['-nr', file])).stdout, '', `${format}: header only is a valid empty capture`);
    for (let i = 0; i < 3; i++) {
      cf.write(RECORDS[i]);
      const dump = await run('tcpdump', ['-nr', file]);
      t.is(packetLines(dump.stdout), i + 1, `${format} after record ${i + 1}`);
      t.is(readCapture(readFileSync(file)).packets.length, i + 1);
    }
    cf.close();
    // The streaming pieces are the whole file.
    const w = createCaptureWriter(format, { points: ['port:inst-a'] });
    t.deepEqual(readFileSync(file), Buffer.concat([w.header(), ...RECORDS.slice(0, 3).map((r) => w.record(r))]));
  }
});

test('records longer than the snapshot length are cut, keeping their original length', async (t) => {
  const file = join(tmp(t), 'snap.pcap');
  writeFileSync(file, writeCapture('pcap-ns', RECORDS, { snaplen: 40 }));
  const c = readCapture(readFileSync(file));
  t.is(c.snaplen, 40);
  t.deepEqual(c.packets.map((p) => [p.data.length, p.origLen]), RECORDS.map((r) => [Math.min(40, r.data.length), r.data.length]));
  const { stdout } = await run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.cap_len', '-e', 'frame.len']);
  t.deepEqual(stdout.trimEnd().split('\n'), RECORDS.map((r) => `${Math.min(40, r.data.length)}\t${r.data.length}`));
});

// --- foreign writers -> our reader -----------------------------------------------------------------------

test('tcpdump -w of pings in a fresh namespace, converted by editcap to ns pcap and pcapng: same packets from all three', async (t) => {
  const dir = tmp(t);
  const ns = `an${process.pid}x99pcap`;
  await run('ip', ['netns', 'add', ns]);
  t.teardown(() => run('ip', ['netns', 'delete', ns], { reject: false }).then(() => undefined));
  await runIn(ns, 'ip', ['link', 'set', 'lo', 'up']);
  const us = join(dir, 'ping.pcap');
  // Immediate mode: without it the packets wait in the kernel ring for a timeout and SIGINT loses them.
  const dump = spawnIn(ns, 'tcpdump', ['-i', 'lo', '-n', '-U', '--immediate-mode', '-w', us, 'icmp']);
  t.teardown(() => stopProcess(dump, { group: true }).then(() => undefined));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    dump.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      if (err.includes('listening on')) resolve();
    });
    dump.once('exit', () => reject(new Error(`tcpdump exited: ${err}`)));
  });
  await runIn(ns, 'ping', ['-c', '5', '-i', '0.2', '-n', '127.0.0.1']);
  await stopProcess(dump, { signal: 'SIGINT', group: true });

  const nsFile = join(dir, 'ping-ns.pcap');
  const ngFile = join(dir, 'ping.pcapng');
  await run('editcap', ['-F', 'nsecpcap', us, nsFile]);
  await run('editcap', ['-F', 'pcapng', us, ngFile]);
  const captures = [us, nsFile, ngFile].map((f) => readCapture(readFileSync(f)));
  t.deepEqual(captures.map((c) => c.format), ['pcap', 'pcap-ns', 'pcapng']);
  const [a, b, c] = captures;
  t.is(a.packets.length, 10, 'five requests and five replies');
  for (const other of [b, c]) {
    t.is(other.packets.length, a.packets.length);
    other.packets.forEach((p, i) => {
      t.deepEqual(p.data, a.packets[i].data);
      t.is(p.origLen, a.packets[i].origLen);
      t.is(p.tsNs, a.packets[i].tsNs); // microsecond source: every format holds it exactly
    });
  }
  t.is(c.interfaces?.length, 1);
  t.is(a.packets[0].tsNs % 1000n, 0n, 'a microsecond capture');
  t.true(a.packets[0].tsNs > 1_600_000_000_000_000_000n, 'a wall-clock timestamp');
  for (const file of [us, nsFile, ngFile]) {
    const theirs = await tsharkRows(file);
    const ours = readCapture(readFileSync(file)).packets.map(ourRow);
    t.deepEqual(theirs, ours, file);
  }
  const types = c.packets.map((p) => decodeFrame(p.data).find((l) => l.name === 'icmp')?.fields.type);
  t.deepEqual(types, [8, 0, 8, 0, 8, 0, 8, 0, 8, 0]);
});

// --- truncation and corruption -----------------------------------------------------------------------

for (const format of FORMATS) {
  test(`${format}: every truncation either ends at a record boundary or fails naming the offset`, (t) => {
    const w = createCaptureWriter(format);
    const pieces = [w.header(), ...RECORDS.slice(0, 3).map((r) => w.record(r))];
    const whole = Buffer.concat(pieces);
    const boundaries = new Map<number, number>(); // file length -> whole packets
    let len = 0;
    pieces.forEach((p, i) => boundaries.set((len += p.length), i));
    if (format === 'pcapng') {
      // An interface block on its own also ends a valid file (with the packets before it).
      for (let at = 0, n = 0; at < whole.length; at += whole.readUInt32LE(at + 4)) {
        if (whole.readUInt32LE(at) === 6) n++;
        boundaries.set(at + whole.readUInt32LE(at + 4), n);
      }
    }
    for (let cut = 0; cut < whole.length; cut++) {
      const bytes = whole.subarray(0, cut);
      const packets = boundaries.get(cut);
      if (packets !== undefined) {
        t.is(readCapture(bytes).packets.length, packets, `cut at ${cut}`);
        continue;
      }
      const err = t.throws(() => readCapture(bytes), { instanceOf: CaptureFileError }, `cut at ${cut}`) as CaptureFileError;
      t.true(err.offset <= cut, `cut at ${cut}: offset ${err.offset}`);
      t.regex(err.message, /offset \d+/, `cut at ${cut}`);
      if (cut >= 4) t.regex(err.message, new RegExp(`(file ends at ${cut}|is cut off)`), `cut at ${cut}: ${err.message}`);
      // What was whole before the cut is still delivered.
      const before = [...boundaries].filter(([end]) => end <= cut).map(([, n]) => n);
      if (err.partial !== undefined) t.is(err.partial.packets.length, Math.max(0, ...before), `cut at ${cut}`);
      else t.true(before.length === 0, `cut at ${cut}: no partial`);
    }
  });
}

test('corrupt files: bad magic, absurd lengths, wrong trailer, unknown interface, bad version', (t) => {
  const msg = (bytes: Uint8Array) => (t.throws(() => readCapture(bytes), { instanceOf: CaptureFileError }) as CaptureFileError).message;
  t.is(msg(new Uint8Array(0)), 'capture: file is empty: no magic number at offset 0');
  t.regex(msg(Buffer.from('GIF89a-not-a-capture-file')), /^capture: unknown magic 0x47494638 at offset 0/);

  const pcap = writeCapture('pcap', RECORDS.slice(0, 2));
  const absurd = Buffer.from(pcap);
  absurd.writeUInt32LE(9_000_000, 24 + 8);
  t.is(msg(absurd), 'pcap: record 1 at offset 24 claims 9000000 captured bytes, above the 262144-byte maximum (corrupt header)');
  const version = Buffer.from(pcap);
  version.writeUInt16LE(3, 4);
  t.regex(msg(version), /^pcap: version 3\.4 at offset 4 is not supported/);
  const long = Buffer.from(pcap);
  long.writeUInt32LE(1000, 24 + 8);
  t.is(msg(long), `pcap: record 1 at offset 24 claims 1000 captured bytes but the file ends at ${pcap.length} (needs 1040)`);

  const ng = writeCapture('pcapng', RECORDS.slice(0, 2));
  const shbLen = ng.readUInt32LE(4);
  const idbLen = ng.readUInt32LE(shbLen + 4);
  const epb = shbLen + idbLen;
  const huge = Buffer.from(ng);
  huge.writeUInt32LE(9000, epb + 4);
  t.is(msg(huge), `pcapng: block at offset ${epb} claims length 9000 but the file ends at ${ng.length}`);
  const odd = Buffer.from(ng);
  odd.writeUInt32LE(ng.readUInt32LE(epb + 4) + 2, epb + 4);
  t.regex(msg(odd), new RegExp(`^pcapng: block at offset ${epb} claims length \\d+, which is not a multiple of 4`));
  const trailer = Buffer.from(ng);
  const epbLen = ng.readUInt32LE(epb + 4);
  trailer.writeUInt32LE(epbLen + 4, epb + epbLen - 4);
  t.is(msg(trailer), `pcapng: block at offset ${epb}: trailing length ${epbLen + 4} at offset ${epb + epbLen - 4} does not match the leading length ${epbLen}`);
  const iface = Buffer.from(ng);
  iface.writeUInt32LE(5, epb + 8);
  t.is(msg(iface), `pcapng: packet block at offset ${epb} names interface 5, but the section has 1`);
  const bom = Buffer.from(ng);
  bom.writeUInt32LE(0x12345678, 8);
  t.regex(msg(bom), /^pcapng: section header at offset 0 has byte-order magic 0x12345678 at offset 8/);
  const noShb = Buffer.from(ng.subarray(shbLen));
  noShb.writeUInt32LE(0x0a0d0d0a, 0);
  t.regex(msg(noShb), /^pcapng: /);
  const capLen = Buffer.from(ng);
  capLen.writeUInt32LE(5000, epb + 8 + 12);
  t.regex(msg(capLen), new RegExp(`^pcapng: packet block at offset ${epb} claims 5000 captured bytes but the block holds \\d+`));
});

test('pcapng: unknown blocks are skipped and simple packet blocks are read', (t) => {
  const w = createCaptureWriter('pcapng');
  const head = w.header();
  const first = w.record(RECORDS[0]); // IDB + EPB
  const custom = Buffer.alloc(20); // an unknown block type with an 8-byte body
  custom.writeUInt32LE(0x0bad, 0);
  custom.writeUInt32LE(20, 4);
  custom.writeUInt32LE(20, 16);
  const data = RECORDS[1].data;
  const spb = Buffer.alloc(16 + ((data.length + 3) & ~3));
  spb.writeUInt32LE(3, 0);
  spb.writeUInt32LE(spb.length, 4);
  spb.writeUInt32LE(data.length, 8);
  spb.set(data, 12);
  spb.writeUInt32LE(spb.length, spb.length - 4);
  const c = readCapture(Buffer.concat([head, first, custom, spb]));
  t.is(c.packets.length, 2);
  t.deepEqual(c.packets[1].data, data);
  t.is(c.packets[1].point, 'port:inst-a');
});
