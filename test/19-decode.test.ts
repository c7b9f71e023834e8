// The decoder (layers, summary, layered view, keylogs) and the TCP and DHCP codecs it relies on.
import test from 'ava';
import sodium from 'libsodium-wrappers';
import {
  BOOTREPLY, BOOTREQUEST, DHCP_FLAG_BROADCAST, DHCP_OPT_CLIENT_ID, DHCP_OPT_DNS, DHCP_OPT_DOMAIN_NAME, DHCP_OPT_HOSTNAME,
  DHCP_OPT_LEASE_TIME, DHCP_OPT_MTU, DHCP_OPT_PARAMETER_LIST, DHCP_OPT_REQUESTED_IP, DHCP_OPT_ROUTER,
  DHCP_OPT_SERVER_ID, DHCP_OPT_SUBNET_MASK, DHCPDISCOVER, DHCPOFFER, dhcpMessageType, dhcpOption, dhcpOptionName,
  emitEthernet, emitIcmpv4, emitIpv4, emitTcp, emitUdp, encodeDhcp, ETHERTYPE_IPV4, formatDhcpOptionValue,
  formatTcpFlags, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, parseDhcp, parseIpv4Address, parseMac, parseTcp, TCP_ACK,
  TCP_FIN, TCP_PSH, TCP_SYN, TcpView, vxlanEncap, type DhcpRepr, type TcpRepr,
} from '../dataplane/wire/index.ts';
import { decodeFrame, formatLayers, KeylogError, parseKeylog, summary, type Layer } from '../dataplane/decode/index.ts';
import { throwsWire } from './helpers/wire-assert.ts';

await sodium.ready;

const ip4 = parseIpv4Address;
const MAC_A = parseMac('02:00:00:00:00:01');
const MAC_B = parseMac('02:00:00:00:00:02');

function eth(payload: Uint8Array, src = MAC_A, dst = MAC_B): Uint8Array {
  const f = new Uint8Array(14 + payload.length);
  emitEthernet({ dst, src, ethertype: ETHERTYPE_IPV4, payload }, f);
  return f;
}

function ipv4(protocol: number, src: string, dst: string, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  emitIpv4({ dscp: 0, ecn: 0, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64,
    protocol, src: ip4(src), dst: ip4(dst), options: new Uint8Array(0), payload }, p);
  return p;
}

function ping(id = 7, seq = 1): Uint8Array {
  const m = new Uint8Array(8 + 16);
  emitIcmpv4({ type: 'echo-request', id, seq, data: new Uint8Array(16) }, m);
  return eth(ipv4(IPPROTO_ICMP, '10.0.0.1', '10.0.0.2', m));
}

function udpFrame(src: string, dst: string, srcPort: number, dstPort: number, payload: Uint8Array): Uint8Array {
  const u = new Uint8Array(8 + payload.length);
  emitUdp({ srcPort, dstPort, payload }, u, 0, { src: ip4(src), dst: ip4(dst) });
  return eth(ipv4(IPPROTO_UDP, src, dst, u), parseMac('02:00:00:00:01:01'), parseMac('02:00:00:00:01:02'));
}

function tcpFrame(repr: Partial<TcpRepr>): Uint8Array {
  const r: TcpRepr = { srcPort: 40000, dstPort: 80, seq: 1000, ack: 0, flags: TCP_SYN, window: 64240, urgent: 0,
    options: new Uint8Array(0), payload: new Uint8Array(0), ...repr };
  const s = new Uint8Array(20 + r.options.length + r.payload.length);
  emitTcp(r, s, 0, { src: ip4('10.0.0.1'), dst: ip4('10.0.0.2') });
  return eth(ipv4(IPPROTO_TCP, '10.0.0.1', '10.0.0.2', s));
}

/** A link data message sealed as the format says: type 4, 3 zero bytes, receiver LE, counter LE, AEAD. */
function seal(key: Uint8Array, receiver: number, counter: bigint, plaintext: Uint8Array): Uint8Array {
  const header = new Uint8Array(16);
  const dv = new DataView(header.buffer);
  header[0] = 4;
  dv.setUint32(4, receiver, true);
  dv.setBigUint64(8, counter, true);
  const nonce = new Uint8Array(12);
  nonce.set(header.subarray(8, 16), 4);
  const sealed = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, header, null, nonce, key);
  const out = new Uint8Array(16 + sealed.length);
  out.set(header);
  out.set(sealed, 16);
  return out;
}

const names = (layers: Layer[]) => layers.map((l) => l.name);
const last = (layers: Layer[]) => layers[layers.length - 1];

test('VXLAN: the decoder recurses into the inner frame; summary and layered view', (t) => {
  const frame = udpFrame('198.18.0.1', '198.18.0.2', 50000, 4789, vxlanEncap(42, ping()));
  const layers = decodeFrame(frame);
  t.deepEqual(names(layers), ['eth', 'ipv4', 'udp', 'vxlan', 'eth', 'ipv4', 'icmp']);
  t.is(layers[3].fields.vni, 42);
  t.is(layers[6].fields.checksum, 'ok');
  t.is(summary(layers),
    '198.18.0.1 > 198.18.0.2 VXLAN vni 42: 02:00:00:00:00:01 > 02:00:00:00:00:02: IP 10.0.0.1 > 10.0.0.2: ICMP echo request id 7 seq 1');
  const view = formatLayers(layers).split('\n');
  t.is(view[0], 'Ethernet: src=02:00:00:00:01:01 dst=02:00:00:00:01:02 type=0x0800 typeName=IPv4');
  t.regex(view[3], /^ {6}VXLAN: vni=42 flags=0x08$/);
  t.regex(view[6], /^ {12}ICMP: type=8 code=0 typeName="echo request" id=7 seq=1 dataLength=16 checksum=ok$/);
});

test('TCP: flags, options length and checksum verification in the codec and the decoder', (t) => {
  const mss = Uint8Array.of(2, 4, 0x05, 0xb4);
  const syn = tcpFrame({ options: mss });
  const layers = decodeFrame(syn);
  t.deepEqual(names(layers), ['eth', 'ipv4', 'tcp']);
  t.like(layers[2].fields, { srcPort: 40000, dstPort: 80, flags: 'S', flagNames: 'SYN', optionsLength: 4, headerLength: 24, checksum: 'ok' });
  t.is(summary(layers), 'IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 1000, win 64240, length 0');
  const synAck = decodeFrame(tcpFrame({ flags: TCP_SYN | TCP_ACK, ack: 1001, seq: 5 }));
  t.is(summary(synAck), 'IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S.], seq 5, ack 1001, win 64240, length 0');
  const data = decodeFrame(tcpFrame({ flags: TCP_PSH | TCP_ACK | TCP_FIN, payload: new TextEncoder().encode('GET /') }));
  t.is(data[2].fields.flagNames, 'ACK,PSH,FIN');
  t.deepEqual(names(data), ['eth', 'ipv4', 'tcp', 'payload']);
  t.is(data[3].fields.hex, '474554202f');
  t.is(formatTcpFlags(TCP_FIN | TCP_PSH | TCP_ACK), 'FP.');

  // Codec: view and round trip, checksum enforced with a pseudo-header.
  const seg = syn.subarray(34);
  const view = new TcpView(seg);
  t.is(view.optionsLen, 4);
  t.deepEqual(view.options, mss);
  const pseudo = { src: ip4('10.0.0.1'), dst: ip4('10.0.0.2') };
  t.true(view.checksumValid(pseudo));
  const repr = parseTcp(seg, pseudo);
  t.like(repr, { srcPort: 40000, dstPort: 80, seq: 1000, flags: TCP_SYN, window: 64240 });
  const again = new Uint8Array(seg.length);
  emitTcp(repr, again, 0, pseudo);
  t.deepEqual(again, seg);
  const corrupt = Uint8Array.from(syn);
  corrupt[34 + 4] ^= 0xff; // sequence number
  throwsWire(t, () => parseTcp(corrupt.subarray(34), pseudo), 'tcp', 'checksum', 16);
  t.regex(String(decodeFrame(corrupt)[2].fields.checksum), /^bad 0x[0-9a-f]{4} \(expected 0x[0-9a-f]{4}\)$/);
  const shortOffset = Uint8Array.from(seg);
  shortOffset[12] = 0x40;
  throwsWire(t, () => new TcpView(shortOffset), 'tcp', 'data_offset', 12);
  throwsWire(t, () => new TcpView(seg.subarray(0, 22)), 'tcp', 'data_offset', 12);
  throwsWire(t, () => emitTcp({ ...repr, options: Uint8Array.of(1, 1) }, new Uint8Array(64)), 'tcp', 'options', 20);
});

function discover(): DhcpRepr {
  return {
    op: BOOTREQUEST, htype: 1, hops: 0, xid: 0x3903f326, secs: 3, flags: DHCP_FLAG_BROADCAST,
    ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: MAC_A, sname: '', file: '',
    options: [
      dhcpOption.messageType(DHCPDISCOVER), dhcpOption.clientIdMac(MAC_A),
      dhcpOption.ip(DHCP_OPT_REQUESTED_IP, ip4('10.0.0.5')),
      dhcpOption.codes(DHCP_OPT_PARAMETER_LIST, [1, 3, 6, 15, 26]), dhcpOption.text(DHCP_OPT_HOSTNAME, 'inst-a'),
    ],
  };
}

function offer(): DhcpRepr {
  return {
    op: BOOTREPLY, htype: 1, hops: 1, xid: 0x3903f326, secs: 0, flags: 0,
    ciaddr: 0, yiaddr: ip4('10.0.0.5'), siaddr: ip4('10.0.0.1'), giaddr: ip4('10.0.0.254'), chaddr: MAC_A,
    sname: 'appnet', file: 'boot/pxelinux.0',
    options: [
      dhcpOption.messageType(DHCPOFFER), dhcpOption.ip(DHCP_OPT_SERVER_ID, ip4('10.0.0.1')),
      dhcpOption.u32(DHCP_OPT_LEASE_TIME, 86400), dhcpOption.ip(DHCP_OPT_SUBNET_MASK, ip4('255.255.255.0')),
      dhcpOption.ip(DHCP_OPT_ROUTER, ip4('10.0.0.1')), dhcpOption.ip(DHCP_OPT_DNS, ip4('10.0.0.1'), ip4('10.0.0.2')),
      dhcpOption.text(DHCP_OPT_DOMAIN_NAME, 'appnet.internal'), dhcpOption.u16(DHCP_OPT_MTU, 1450),
      { code: 224, data: Uint8Array.of(0xde, 0xad) },
    ],
  };
}

test('DHCP: emit and parse round-trip every field and option, bytes included', (t) => {
  for (const repr of [discover(), offer()]) {
    const bytes = encodeDhcp(repr);
    const optionBytes = repr.options.reduce((n, o) => n + 2 + o.data.length, 0);
    t.is(bytes.length, Math.max(300, 240 + optionBytes + 1), 'end option, padded to the 300-byte BOOTP minimum');
    t.deepEqual(Array.from(bytes.subarray(236, 240)), [99, 130, 83, 99]);
    const parsed = parseDhcp(bytes);
    t.deepEqual({ ...parsed, options: parsed.options.map((o) => ({ code: o.code, data: Uint8Array.from(o.data) })) }, repr);
    t.deepEqual(encodeDhcp(parsed), bytes);
  }
  t.is(dhcpMessageType(offer()), DHCPOFFER);
  const values = offer().options.map((o) => `${dhcpOptionName(o.code)}: ${formatDhcpOptionValue(o)}`);
  t.deepEqual(values, [
    'message type: OFFER', 'server identifier: 10.0.0.1', 'lease time: 86400 s', 'subnet mask: 255.255.255.0',
    'router: 10.0.0.1', 'domain name server: 10.0.0.1, 10.0.0.2', 'domain name: "appnet.internal"',
    'interface MTU: 1450', 'option 224: hex dead',
  ]);
  t.is(formatDhcpOptionValue(dhcpOption.clientIdMac(MAC_A)), 'ethernet 02:00:00:00:00:01');
  t.is(dhcpOptionName(DHCP_OPT_CLIENT_ID), 'client identifier');
  t.is(dhcpOptionName(255), 'end');
  t.is(dhcpOptionName(0), 'pad');
  // Many options: no padding needed, still ends with the end option.
  const big = { ...offer(), options: [...offer().options, { code: 250, data: new Uint8Array(200) }] };
  const bigBytes = encodeDhcp(big);
  t.is(bigBytes[bigBytes.length - 1], 255);
  t.is(parseDhcp(bigBytes).options.length, big.options.length);
});

test('DHCP: parse and emit errors name the field and offset', (t) => {
  const bytes = encodeDhcp(discover());
  const badCookie = Uint8Array.from(bytes);
  badCookie[236] = 0;
  throwsWire(t, () => parseDhcp(badCookie), 'dhcp', 'magic_cookie', 236);
  throwsWire(t, () => parseDhcp(bytes.subarray(0, 239)), 'dhcp', 'header', 0);
  const badOp = Uint8Array.from(bytes);
  badOp[0] = 3;
  throwsWire(t, () => parseDhcp(badOp), 'dhcp', 'op', 0);
  const overrun = Uint8Array.from(bytes.subarray(0, 243));
  overrun[240] = 53;
  overrun[241] = 9;
  throwsWire(t, () => parseDhcp(overrun), 'dhcp', 'option 53', 240);
  throwsWire(t, () => encodeDhcp({ ...discover(), options: [{ code: 12, data: new Uint8Array(256) }] }), 'dhcp', 'option 12', 240);
  throwsWire(t, () => encodeDhcp({ ...discover(), options: [{ code: 255, data: new Uint8Array(0) }] }), 'dhcp', 'option 255', 240);
  throwsWire(t, () => encodeDhcp({ ...discover(), sname: 'x'.repeat(64) }), 'dhcp', 'sname', 44);
  throwsWire(t, () => encodeDhcp({ ...discover(), chaddr: new Uint8Array(17) }), 'dhcp', 'chaddr', 28);
});

test('DHCP in the decoder: message type and named options', (t) => {
  const layers = decodeFrame(udpFrame('0.0.0.0', '255.255.255.255', 68, 67, encodeDhcp(discover())));
  t.deepEqual(names(layers), ['eth', 'ipv4', 'udp', 'dhcp']);
  t.like(layers[3].fields, { op: 'request', messageType: 1, messageTypeName: 'DISCOVER', xid: '0x3903f326', broadcast: true, chaddr: '02:00:00:00:00:01' });
  t.deepEqual(layers[3].fields.options, [
    '53 message type: DISCOVER', '61 client identifier: ethernet 02:00:00:00:00:01', '50 requested IP address: 10.0.0.5',
    '55 parameter request list: 1 (subnet mask), 3 (router), 6 (domain name server), 15 (domain name), 26 (interface MTU)',
    '12 hostname: "inst-a"',
  ]);
  t.is(summary(layers), 'IP 0.0.0.0.68 > 255.255.255.255.67: DHCP DISCOVER, xid 0x3903f326, chaddr 02:00:00:00:00:01, length 300');
  t.regex(formatLayers(layers), /\n {6}DHCP: op=request .*\n {10}options:\n {12}53 message type: DISCOVER\n/);
});

test('link data: encrypted without a keylog, decrypted into VXLAN and the inner frame with one', (t) => {
  const key = sodium.randombytes_buf(32);
  const receiver = 0x0a0b0c0d;
  const message = seal(key, receiver, 5n, vxlanEncap(42, ping(9, 3)));
  const frame = udpFrame('198.18.0.1', '198.18.0.2', 51830, 51830, message);

  const closed = decodeFrame(frame);
  t.deepEqual(names(closed), ['eth', 'ipv4', 'udp', 'link']);
  t.like(last(closed).fields, { typeName: 'data', receiver: '0x0a0b0c0d', counter: '5', state: 'encrypted' });
  t.is(summary(closed), `198.18.0.1 > 198.18.0.2 LINK data encrypted, receiver=0x0a0b0c0d, counter=5, length ${message.length}`);

  const keylog = `# appnet keys export\n\nAPPNET_LINK_KEY 0a0b0c0d ${Buffer.from(key).toString('hex')}\n`;
  const keys = parseKeylog(keylog);
  const open = decodeFrame(frame, { keys });
  t.deepEqual(names(open), ['eth', 'ipv4', 'udp', 'link', 'vxlan', 'eth', 'ipv4', 'icmp']);
  t.like(open[3].fields, { state: 'decrypted', plaintextLength: message.length - 32 });
  t.is(summary(open),
    '198.18.0.1 > 198.18.0.2 LINK data decrypted, receiver=0x0a0b0c0d, counter=5: VXLAN vni 42: 02:00:00:00:00:01 > 02:00:00:00:00:02: IP 10.0.0.1 > 10.0.0.2: ICMP echo request id 9 seq 3');

  // Another receiver's key does not apply; a wrong key for this receiver fails the tag.
  const other = parseKeylog(`APPNET_LINK_KEY 00000001 ${'11'.repeat(32)}`);
  t.is(last(decodeFrame(frame, { keys: other })).fields.state, 'encrypted');
  const wrong = parseKeylog(`APPNET_LINK_KEY 0A0B0C0D ${'11'.repeat(32)}`);
  t.regex(String(last(decodeFrame(frame, { keys: wrong })).fields.malformed), /^link tag at byte \d+: does not verify with the keylog's key\(s\) for receiver 0x0a0b0c0d$/);
  // Two keys for one index (a rekeyed session): the one that verifies is used.
  const both = parseKeylog(`APPNET_LINK_KEY 0a0b0c0d ${'11'.repeat(32)}\nAPPNET_LINK_KEY 0a0b0c0d ${Buffer.from(key).toString('hex')}`);
  t.is(decodeFrame(frame, { keys: both }).length, 8);
  // A tampered counter (authenticated data) fails.
  const tampered = Uint8Array.from(frame);
  tampered[42 + 8] ^= 1;
  t.truthy(last(decodeFrame(tampered, { keys })).fields.malformed);
  // Keepalive: empty plaintext.
  const keepalive = decodeFrame(udpFrame('198.18.0.1', '198.18.0.2', 51830, 51830, seal(key, receiver, 6n, new Uint8Array(0))), { keys });
  t.is(summary(keepalive), '198.18.0.1 > 198.18.0.2 LINK data decrypted, receiver=0x0a0b0c0d, counter=6, keepalive');
  // Decrypted garbage that is not VXLAN: malformed, located in the decrypted payload.
  const junk = decodeFrame(udpFrame('198.18.0.1', '198.18.0.2', 51830, 51830, seal(key, receiver, 7n, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8))), { keys });
  t.is(last(junk).fields.malformed, 'vxlan flags at byte 0 of the decrypted payload: flags 0x01, expected 0x08 (I flag only)');
});

test('link handshake messages are named; unknown types and short data are malformed', (t) => {
  const msg = (bytes: number[]) => decodeFrame(udpFrame('198.18.0.1', '198.18.0.2', 51830, 51830, Uint8Array.from(bytes)));
  t.is(summary(msg([1, 0, 0, 0, ...new Array(144).fill(0)])), '198.18.0.1 > 198.18.0.2 LINK handshake initiation, length 148');
  t.is(last(msg([2, 0, 0, 0, 1, 2])).fields.typeName, 'handshake response');
  t.is(last(msg([3, 0, 0, 0])).fields.typeName, 'cookie reply');
  t.is(last(msg([9, 0, 0, 0])).fields.malformed, 'link type at byte 42: unknown message type 9 (1..4)');
  t.is(last(msg([4, 0, 0, 0, 1, 0, 0, 0])).fields.malformed, 'link message at byte 42: 8 bytes, a data message needs at least 32');
});

test('parseKeylog: comments, blank lines, case; errors carry the line number', (t) => {
  const keys = parseKeylog(`# comment\r\n\r\n  APPNET_LINK_KEY deadBEEF ${'ab'.repeat(32)}  \r\n`);
  t.deepEqual([...keys.keys()], [0xdeadbeef]);
  t.is(keys.get(0xdeadbeef)?.[0].length, 32);
  const err = (text: string) => t.throws(() => parseKeylog(text), { instanceOf: KeylogError }) as KeylogError;
  t.is(err(`# ok\nCLIENT_RANDOM 00 11`).message, 'keylog line 2: unknown label "CLIENT_RANDOM", expected APPNET_LINK_KEY');
  t.is(err(`\n\nAPPNET_LINK_KEY 123 ${'ab'.repeat(32)}`).line, 3);
  t.regex(err(`APPNET_LINK_KEY 00000001 abcd`).message, /^keylog line 1: key is not 64 hex digits/);
  t.regex(err(`APPNET_LINK_KEY 00000001`).message, /^keylog line 1: expected "APPNET_LINK_KEY <receiver index/);
});

test('malformed layers end the decode with what and where; the decoder never throws', (t) => {
  const good = ping();
  t.is(last(decodeFrame(good.subarray(0, 10))).fields.malformed, 'ethernet header at byte 0: frame is 10 bytes, header needs 14');
  t.is(last(decodeFrame(good.subarray(0, 40))).fields.malformed,
    'ipv4 total_length at byte 16: total length 44 exceeds the 26 bytes available (truncated packet)');
  const badVxlan = udpFrame('198.18.0.1', '198.18.0.2', 50000, 4789, Uint8Array.of(0x0c, 0, 0, 0, 0, 0, 42, 0));
  t.deepEqual(names(decodeFrame(badVxlan)), ['eth', 'ipv4', 'udp', 'vxlan']);
  t.is(last(decodeFrame(badVxlan)).fields.malformed, 'vxlan flags at byte 42: flags 0x0c, expected 0x08 (I flag only)');
  t.regex(summary(decodeFrame(badVxlan)), /^198\.18\.0\.1 > 198\.18\.0\.2 VXLAN \[malformed vxlan flags at byte 42: .*\]$/);
  const shortInner = udpFrame('198.18.0.1', '198.18.0.2', 50000, 4789, vxlanEncap(42, good.subarray(0, 20)));
  t.is(last(decodeFrame(shortInner)).fields.malformed, 'ipv4 header at byte 64: packet is 6 bytes, header needs 20');
  const badIpChecksum = Uint8Array.from(good);
  badIpChecksum[14 + 8] = 1; // TTL changed without fixing the checksum: reported, not fatal
  t.regex(String(decodeFrame(badIpChecksum)[1].fields.checksum), /^bad /);
  t.is(decodeFrame(badIpChecksum).length, 3);
  const badUdpLen = udpFrame('10.0.0.1', '10.0.0.2', 1, 2, new Uint8Array(4));
  badUdpLen[14 + 20 + 5] = 200;
  t.is(last(decodeFrame(badUdpLen)).fields.malformed, 'udp length at byte 38: length 200 exceeds the 12 bytes available (truncated datagram)');
  const dhcpTrunc = udpFrame('0.0.0.0', '255.255.255.255', 68, 67, encodeDhcp(discover()).subarray(0, 100));
  t.regex(String(last(decodeFrame(dhcpTrunc)).fields.malformed), /^dhcp header at byte 42: message is 100 bytes/);

  // Every prefix and every single-byte corruption of a few frames: layers, never an exception.
  const key = new Uint8Array(32).fill(7);
  const keys = parseKeylog(`APPNET_LINK_KEY 00000001 ${'07'.repeat(32)}`);
  const frames = [
    udpFrame('198.18.0.1', '198.18.0.2', 50000, 4789, vxlanEncap(42, ping())),
    udpFrame('198.18.0.1', '198.18.0.2', 51830, 51830, seal(key, 1, 0n, vxlanEncap(1, tcpFrame({})))),
    udpFrame('0.0.0.0', '255.255.255.255', 68, 67, encodeDhcp(offer())),
  ];
  let decoded = 0;
  for (const f of frames) {
    for (let n = 0; n <= f.length; n++) {
      const layers = decodeFrame(f.subarray(0, n), { keys });
      t.true(layers.length >= 1);
      summary(layers);
      formatLayers(layers);
      decoded++;
    }
    for (let i = 0; i < f.length; i++) {
      const c = Uint8Array.from(f);
      c[i] ^= 0xa5;
      const layers = decodeFrame(c, { keys });
      t.true(layers.every((l, k) => k === layers.length - 1 || l.fields.malformed === undefined));
      decoded++;
    }
  }
  t.true(decoded > 1000);
});
