/**
 * DHCP (RFC 2131) over the BOOTP message (RFC 951), with options as TLVs (RFC 2132).
 *
 * ```
 *  0    1     2     3     4             8       10      12      16      20      24      28
 * +----+-----+-----+-----+-------------+-------+-------+-------+-------+-------+-------+--------------+
 * | op |htype| hlen| hops|     xid     | secs  | flags |ciaddr |yiaddr |siaddr |giaddr | chaddr (16)  |
 * +----+-----+-----+-----+-------------+-------+-------+-------+-------+-------+-------+--------------+
 *  44: sname (64, NUL-terminated) | 108: file (128) | 236: magic cookie 99.130.83.99 | 240: options
 * options: pad (0) | end (255) | code u8, length u8, data
 * ```
 * Options are kept in wire order, pad and end excluded, so `emitDhcp(parseDhcp(b))` reproduces every
 * option a server or client sent. Option overload (52) and RFC 3396 long options are not interpreted:
 * they parse as ordinary options. `emitDhcp` pads the message to the 300-byte BOOTP minimum that
 * some relays and clients insist on (RFC 1542 §2.1).
 */
import { WireError, checkRoom, checkUint } from './errors.ts';
import { bytesToIpv4, formatIpv4Address, formatMac, ipv4ToBytes } from './address.ts';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
export const DHCP_FIXED_LEN = 236;
export const DHCP_OPTIONS_OFFSET = 240;
export const DHCP_MIN_MESSAGE_LEN = 300;
export const DHCP_MAGIC_COOKIE = 0x63825363;
export const DHCP_FLAG_BROADCAST = 0x8000;
export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;

export const DHCP_OPT_PAD = 0;
export const DHCP_OPT_SUBNET_MASK = 1;
export const DHCP_OPT_ROUTER = 3;
export const DHCP_OPT_DNS = 6;
export const DHCP_OPT_HOSTNAME = 12;
export const DHCP_OPT_DOMAIN_NAME = 15;
export const DHCP_OPT_MTU = 26;
export const DHCP_OPT_BROADCAST = 28;
export const DHCP_OPT_REQUESTED_IP = 50;
export const DHCP_OPT_LEASE_TIME = 51;
export const DHCP_OPT_MESSAGE_TYPE = 53;
export const DHCP_OPT_SERVER_ID = 54;
export const DHCP_OPT_PARAMETER_LIST = 55;
export const DHCP_OPT_MESSAGE = 56;
export const DHCP_OPT_MAX_MESSAGE_SIZE = 57;
export const DHCP_OPT_RENEWAL_TIME = 58;
export const DHCP_OPT_REBINDING_TIME = 59;
export const DHCP_OPT_CLIENT_ID = 61;
export const DHCP_OPT_END = 255;

export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;
export const DHCPINFORM = 8;

export const DHCP_MESSAGE_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: 'DISCOVER', 2: 'OFFER', 3: 'REQUEST', 4: 'DECLINE', 5: 'ACK', 6: 'NAK', 7: 'RELEASE', 8: 'INFORM',
};

type ValueKind = 'ip' | 'ips' | 'text' | 'u16' | 'u32' | 'seconds' | 'message-type' | 'codes' | 'client-id';

/** Names (as in RFC 2132 and Wireshark, shortened) and value kinds of the options we name. */
const OPTION_INFO: Readonly<Record<number, { name: string; kind: ValueKind }>> = {
  [DHCP_OPT_SUBNET_MASK]: { name: 'subnet mask', kind: 'ip' },
  [DHCP_OPT_ROUTER]: { name: 'router', kind: 'ips' },
  [DHCP_OPT_DNS]: { name: 'domain name server', kind: 'ips' },
  [DHCP_OPT_HOSTNAME]: { name: 'hostname', kind: 'text' },
  [DHCP_OPT_DOMAIN_NAME]: { name: 'domain name', kind: 'text' },
  [DHCP_OPT_MTU]: { name: 'interface MTU', kind: 'u16' },
  [DHCP_OPT_BROADCAST]: { name: 'broadcast address', kind: 'ip' },
  [DHCP_OPT_REQUESTED_IP]: { name: 'requested IP address', kind: 'ip' },
  [DHCP_OPT_LEASE_TIME]: { name: 'lease time', kind: 'seconds' },
  [DHCP_OPT_MESSAGE_TYPE]: { name: 'message type', kind: 'message-type' },
  [DHCP_OPT_SERVER_ID]: { name: 'server identifier', kind: 'ip' },
  [DHCP_OPT_PARAMETER_LIST]: { name: 'parameter request list', kind: 'codes' },
  [DHCP_OPT_MESSAGE]: { name: 'message', kind: 'text' },
  [DHCP_OPT_MAX_MESSAGE_SIZE]: { name: 'maximum message size', kind: 'u16' },
  [DHCP_OPT_RENEWAL_TIME]: { name: 'renewal time', kind: 'seconds' },
  [DHCP_OPT_REBINDING_TIME]: { name: 'rebinding time', kind: 'seconds' },
  [DHCP_OPT_CLIENT_ID]: { name: 'client identifier', kind: 'client-id' },
};

const OP = 0;
const HTYPE = 1;
const HLEN = 2;
const HOPS = 3;
const XID = 4;
const SECS = 8;
const FLAGS = 10;
const CIADDR = 12;
const YIADDR = 16;
const SIADDR = 20;
const GIADDR = 24;
const CHADDR = 28;
const SNAME = 44;
const FILE = 108;
const COOKIE = 236;
const CHADDR_LEN = 16;
const SNAME_LEN = 64;
const FILE_LEN = 128;

export interface DhcpOption {
  code: number;
  /** On parse, a view into the input. At most 255 bytes. */
  data: Uint8Array;
}

export interface DhcpRepr {
  /** `BOOTREQUEST` (1, client to server) or `BOOTREPLY` (2). */
  op: number;
  /** Hardware type; 1 for Ethernet. */
  htype: number;
  hops: number;
  xid: number;
  secs: number;
  /** Raw flags; `DHCP_FLAG_BROADCAST` is the only defined bit. */
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  /** Client hardware address, `hlen` bytes (at most 16; 6 for Ethernet). */
  chaddr: Uint8Array;
  /** Server host name and boot file name, without their NUL terminators. */
  sname: string;
  file: string;
  /** In wire order, without pad and end. */
  options: DhcpOption[];
}

/** Parses a BOOTP/DHCP message (the UDP payload). Throws `WireError` naming the field and offset. */
export function parseDhcp(bytes: Uint8Array): DhcpRepr {
  if (bytes.length < DHCP_OPTIONS_OFFSET) {
    throw new WireError('dhcp', 'header', 0,
      `message is ${bytes.length} bytes, the fixed header and magic cookie need ${DHCP_OPTIONS_OFFSET}`);
  }
  const op = bytes[OP];
  if (op !== BOOTREQUEST && op !== BOOTREPLY) {
    throw new WireError('dhcp', 'op', OP, `op ${op}, expected 1 (BOOTREQUEST) or 2 (BOOTREPLY)`);
  }
  const hlen = bytes[HLEN];
  if (hlen > CHADDR_LEN) throw new WireError('dhcp', 'hlen', HLEN, `hardware address length ${hlen} exceeds 16`);
  const cookie = bytesToIpv4(bytes, COOKIE);
  if (cookie !== DHCP_MAGIC_COOKIE) {
    throw new WireError('dhcp', 'magic_cookie', COOKIE,
      `0x${cookie.toString(16).padStart(8, '0')}, expected 0x63825363 (a BOOTP message without DHCP options)`);
  }
  return {
    op,
    htype: bytes[HTYPE],
    hops: bytes[HOPS],
    xid: bytesToIpv4(bytes, XID),
    secs: u16(bytes, SECS),
    flags: u16(bytes, FLAGS),
    ciaddr: bytesToIpv4(bytes, CIADDR),
    yiaddr: bytesToIpv4(bytes, YIADDR),
    siaddr: bytesToIpv4(bytes, SIADDR),
    giaddr: bytesToIpv4(bytes, GIADDR),
    chaddr: bytes.slice(CHADDR, CHADDR + hlen),
    sname: cString(bytes, SNAME, SNAME_LEN),
    file: cString(bytes, FILE, FILE_LEN),
    options: parseDhcpOptions(bytes, DHCP_OPTIONS_OFFSET),
  };
}

/** The option TLVs from `offset` to the end option (or the end of the buffer, for senders that omit it). */
export function parseDhcpOptions(bytes: Uint8Array, offset: number): DhcpOption[] {
  const out: DhcpOption[] = [];
  let at = offset;
  while (at < bytes.length) {
    const code = bytes[at];
    if (code === DHCP_OPT_END) break;
    if (code === DHCP_OPT_PAD) {
      at++;
      continue;
    }
    if (at + 1 >= bytes.length) {
      throw new WireError('dhcp', `option ${code}`, at, `option has no length byte (message ends at ${bytes.length})`);
    }
    const len = bytes[at + 1];
    if (at + 2 + len > bytes.length) {
      throw new WireError('dhcp', `option ${code}`, at,
        `option claims ${len} bytes but the message ends at ${bytes.length}`);
    }
    out.push({ code, data: bytes.subarray(at + 2, at + 2 + len) });
    at += 2 + len;
  }
  return out;
}

/** Options plus end option plus padding to the 300-byte minimum. */
export function dhcpBufferLen(repr: DhcpRepr): number {
  let len = DHCP_OPTIONS_OFFSET + 1;
  for (const o of repr.options) len += 2 + o.data.length;
  return Math.max(len, DHCP_MIN_MESSAGE_LEN);
}

/** Writes the message at `buf[offset..)` and returns the bytes written (see `dhcpBufferLen`). */
export function emitDhcp(repr: DhcpRepr, buf: Uint8Array, offset = 0): number {
  checkUint('dhcp', 'op', offset + OP, repr.op, 0xff);
  if (repr.op !== BOOTREQUEST && repr.op !== BOOTREPLY) {
    throw new WireError('dhcp', 'op', offset + OP, `op ${repr.op}, expected 1 (BOOTREQUEST) or 2 (BOOTREPLY)`);
  }
  checkUint('dhcp', 'htype', offset + HTYPE, repr.htype, 0xff);
  checkUint('dhcp', 'hops', offset + HOPS, repr.hops, 0xff);
  checkUint('dhcp', 'xid', offset + XID, repr.xid, 0xffffffff);
  checkUint('dhcp', 'secs', offset + SECS, repr.secs, 0xffff);
  checkUint('dhcp', 'flags', offset + FLAGS, repr.flags, 0xffff);
  for (const [field, at, v] of [['ciaddr', CIADDR, repr.ciaddr], ['yiaddr', YIADDR, repr.yiaddr],
    ['siaddr', SIADDR, repr.siaddr], ['giaddr', GIADDR, repr.giaddr]] as const) {
    checkUint('dhcp', field, offset + at, v, 0xffffffff);
  }
  if (!(repr.chaddr instanceof Uint8Array) || repr.chaddr.length > CHADDR_LEN) {
    throw new WireError('dhcp', 'chaddr', offset + CHADDR, `chaddr must be a Uint8Array of at most 16 bytes`);
  }
  const sname = cStringBytes('sname', offset + SNAME, repr.sname, SNAME_LEN);
  const file = cStringBytes('file', offset + FILE, repr.file, FILE_LEN);
  const len = dhcpBufferLen(repr);
  checkRoom('dhcp', buf, offset, len);
  let at = offset + DHCP_OPTIONS_OFFSET;
  for (const o of repr.options) {
    checkUint('dhcp', 'option code', at, o.code, 0xff);
    if (o.code === DHCP_OPT_PAD || o.code === DHCP_OPT_END) {
      throw new WireError('dhcp', `option ${o.code}`, at, `pad and end are written by emitDhcp, not listed as options`);
    }
    if (o.data.length > 255) {
      throw new WireError('dhcp', `option ${o.code}`, at, `option data is ${o.data.length} bytes, at most 255 fit`);
    }
  }
  buf.fill(0, offset, offset + len);
  buf[offset + OP] = repr.op;
  buf[offset + HTYPE] = repr.htype;
  buf[offset + HLEN] = repr.chaddr.length;
  buf[offset + HOPS] = repr.hops;
  ipv4ToBytes(repr.xid, buf, offset + XID);
  put16(buf, offset + SECS, repr.secs);
  put16(buf, offset + FLAGS, repr.flags);
  ipv4ToBytes(repr.ciaddr, buf, offset + CIADDR);
  ipv4ToBytes(repr.yiaddr, buf, offset + YIADDR);
  ipv4ToBytes(repr.siaddr, buf, offset + SIADDR);
  ipv4ToBytes(repr.giaddr, buf, offset + GIADDR);
  buf.set(repr.chaddr, offset + CHADDR);
  buf.set(sname, offset + SNAME);
  buf.set(file, offset + FILE);
  ipv4ToBytes(DHCP_MAGIC_COOKIE, buf, offset + COOKIE);
  for (const o of repr.options) {
    buf[at] = o.code;
    buf[at + 1] = o.data.length;
    buf.set(o.data, at + 2);
    at += 2 + o.data.length;
  }
  buf[at] = DHCP_OPT_END;
  return len;
}

/** A new buffer holding the message. */
export function encodeDhcp(repr: DhcpRepr): Uint8Array {
  const buf = new Uint8Array(dhcpBufferLen(repr));
  emitDhcp(repr, buf);
  return buf;
}

// --- option values --------------------------------------------------------------------------------

export function findDhcpOption(repr: Pick<DhcpRepr, 'options'>, code: number): Uint8Array | undefined {
  return repr.options.find((o) => o.code === code)?.data;
}

/** The option 53 value (`DHCPDISCOVER`…`DHCPINFORM`), or undefined for plain BOOTP or a malformed option. */
export function dhcpMessageType(repr: Pick<DhcpRepr, 'options'>): number | undefined {
  const d = findDhcpOption(repr, DHCP_OPT_MESSAGE_TYPE);
  return d !== undefined && d.length === 1 ? d[0] : undefined;
}

export const dhcpOption = {
  messageType: (type: number): DhcpOption => ({ code: DHCP_OPT_MESSAGE_TYPE, data: Uint8Array.of(type) }),
  ip: (code: number, ...addresses: number[]): DhcpOption => {
    const data = new Uint8Array(4 * addresses.length);
    addresses.forEach((a, i) => ipv4ToBytes(a, data, 4 * i));
    return { code, data };
  },
  u16: (code: number, v: number): DhcpOption => ({ code, data: Uint8Array.of(v >> 8, v & 0xff) }),
  u32: (code: number, v: number): DhcpOption => ({ code, data: ipv4ToBytes(v) }),
  text: (code: number, s: string): DhcpOption => ({ code, data: new TextEncoder().encode(s) }),
  codes: (code: number, codes: number[]): DhcpOption => ({ code, data: Uint8Array.from(codes) }),
  /** Client identifier of type 1 (Ethernet) + MAC, as most clients send it (RFC 2132 §9.14). */
  clientIdMac: (mac: Uint8Array): DhcpOption => {
    const data = new Uint8Array(1 + mac.length);
    data[0] = 1;
    data.set(mac, 1);
    return { code: DHCP_OPT_CLIENT_ID, data };
  },
};

export function dhcpOptionName(code: number): string {
  if (code === DHCP_OPT_PAD) return 'pad';
  if (code === DHCP_OPT_END) return 'end';
  return OPTION_INFO[code]?.name ?? `option ${code}`;
}

/** Human-readable value of an option, e.g. `DISCOVER`, `10.0.0.1, 10.0.0.2`, `86400 s`, `hex 0102`. */
export function formatDhcpOptionValue(o: DhcpOption): string {
  const kind = OPTION_INFO[o.code]?.kind;
  const d = o.data;
  const ips = (n: number) => d.length >= 4 * n && d.length % 4 === 0;
  switch (kind) {
    case 'ip':
      if (d.length === 4) return formatIpv4Address(bytesToIpv4(d));
      break;
    case 'ips':
      if (ips(1)) return Array.from({ length: d.length / 4 }, (_, i) => formatIpv4Address(bytesToIpv4(d, 4 * i))).join(', ');
      break;
    case 'text':
      return JSON.stringify(Buffer.from(d).toString('latin1'));
    case 'u16':
      if (d.length === 2) return String(u16(d, 0));
      break;
    case 'u32':
    case 'seconds':
      if (d.length === 4) return `${bytesToIpv4(d)}${kind === 'seconds' ? ' s' : ''}`;
      break;
    case 'message-type':
      if (d.length === 1) return DHCP_MESSAGE_TYPE_NAMES[d[0]] ?? `unknown (${d[0]})`;
      break;
    case 'codes':
      return Array.from(d, (c) => `${c} (${dhcpOptionName(c)})`).join(', ');
    case 'client-id':
      if (d.length === 7 && d[0] === 1) return `ethernet ${formatMac(d, 1)}`;
      break;
    default:
      break;
  }
  return `hex ${Buffer.from(d).toString('hex')}`;
}

function cString(bytes: Uint8Array, at: number, max: number): string {
  let end = at;
  while (end < at + max && bytes[end] !== 0) end++;
  return Buffer.from(bytes.subarray(at, end)).toString('latin1');
}

function cStringBytes(field: string, offset: number, s: string, max: number): Uint8Array {
  const b = Buffer.from(s, 'latin1');
  if (b.length >= max || b.includes(0) || Buffer.from(b).toString('latin1') !== s) {
    throw new WireError('dhcp', field, offset, `must be at most ${max - 1} Latin-1 characters without NUL`);
  }
  return b;
}

function u16(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 8) | bytes[at + 1];
}

function put16(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >> 8;
  buf[at + 1] = value;
}
