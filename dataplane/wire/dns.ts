/**
 * DNS messages (RFC 1035 §4): header, questions and resource records, with name compression.
 *
 * ```
 *  0       2       4        6        8        10       12
 * +-------+-------+--------+--------+--------+--------+------------------------------------------
 * |  id   | flags |qdcount |ancount |nscount |arcount | questions | answers | authority | additional
 * +-------+-------+--------+--------+--------+--------+------------------------------------------
 * flags: QR(1) OPCODE(4) AA TC RD RA Z AD CD (RFC 4035) RCODE(4)
 * name:  labels (length 1..63, then bytes), ended by a 0 byte or a pointer 11xxxxxx xxxxxxxx (RFC 1035 §4.1.4)
 * question: name | type u16 | class u16      record: name | type | class | ttl u32 | rdlength u16 | rdata
 * ```
 * Names are text in presentation form without the final dot (the root is `''`): a `.` or `\` inside a
 * label is escaped as `\.` / `\\`, bytes outside printable ASCII as `\DDD` (RFC 1035 §5.1), and case
 * is kept as sent. Record data is decoded for A (an address) and for PTR, CNAME and NS (a name, since
 * those may be compressed against the message); every other type is opaque bytes, copied as they are.
 * On read, a pointer may go anywhere earlier or later in the message but not past its end, and no
 * pointer target may be visited twice (a loop); either error names the offset of the pointer.
 * On write, names (owners and PTR/CNAME/NS data) are compressed against exact earlier occurrences.
 */
import { WireError, checkRoom, checkUint } from './errors.ts';
import { bytesToIpv4, ipv4ToBytes } from './address.ts';

export const DNS_PORT = 53;
export const DNS_HEADER_LEN = 12;
export const DNS_MAX_LABEL_LEN = 63;
/** Wire length of a name, length bytes and the final 0 included (RFC 1035 §2.3.4). */
export const DNS_MAX_NAME_LEN = 255;
/** Largest reply to a query without EDNS (RFC 1035 §4.2.1). */
export const DNS_MAX_UDP_LEN = 512;

export const DNS_TYPE_A = 1;
export const DNS_TYPE_NS = 2;
export const DNS_TYPE_CNAME = 5;
export const DNS_TYPE_SOA = 6;
export const DNS_TYPE_PTR = 12;
export const DNS_TYPE_MX = 15;
export const DNS_TYPE_TXT = 16;
export const DNS_TYPE_AAAA = 28;
export const DNS_TYPE_OPT = 41;
export const DNS_TYPE_ANY = 255;
export const DNS_CLASS_IN = 1;
export const DNS_CLASS_ANY = 255;

export const DNS_OPCODE_QUERY = 0;
export const DNS_RCODE_NOERROR = 0;
export const DNS_RCODE_FORMERR = 1;
export const DNS_RCODE_SERVFAIL = 2;
export const DNS_RCODE_NXDOMAIN = 3;
export const DNS_RCODE_NOTIMP = 4;
export const DNS_RCODE_REFUSED = 5;

const ID = 0;
const FLAGS = 2;
const QDCOUNT = 4;
const POINTER = 0xc0;
const MAX_POINTER_TARGET = 0x3fff;
const NAME_TYPES = new Set([DNS_TYPE_PTR, DNS_TYPE_CNAME, DNS_TYPE_NS]);

export interface DnsHeader {
  id: number;
  /** true in a response. */
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  /** The one reserved bit; 0 on send. */
  z: boolean;
  ad: boolean;
  cd: boolean;
  rcode: number;
}

export interface DnsHeaderCounts {
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

export type DnsRecordData =
  | { kind: 'a'; address: number }
  | { kind: 'name'; name: string }
  /** On parse, a copy of the rdata. */
  | { kind: 'opaque'; bytes: Uint8Array };

export interface DnsRecord {
  name: string;
  type: number;
  /** For OPT (RFC 6891) this is the sender's UDP payload size. */
  class: number;
  /** For OPT this holds the extended RCODE, version and flags. */
  ttl: number;
  data: DnsRecordData;
}

export interface DnsMessage extends DnsHeader {
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

// --- read -----------------------------------------------------------------------------------------

/** The header and section counts; throws `WireError` only when fewer than 12 bytes are given. */
export function parseDnsHeader(bytes: Uint8Array): DnsHeader & DnsHeaderCounts {
  if (bytes.length < DNS_HEADER_LEN) {
    throw new WireError('dns', 'header', 0, `message is ${bytes.length} bytes, the header needs ${DNS_HEADER_LEN}`);
  }
  const f = u16(bytes, FLAGS);
  return {
    id: u16(bytes, ID),
    qr: (f & 0x8000) !== 0,
    opcode: (f >> 11) & 0xf,
    aa: (f & 0x0400) !== 0,
    tc: (f & 0x0200) !== 0,
    rd: (f & 0x0100) !== 0,
    ra: (f & 0x0080) !== 0,
    z: (f & 0x0040) !== 0,
    ad: (f & 0x0020) !== 0,
    cd: (f & 0x0010) !== 0,
    rcode: f & 0xf,
    qdcount: u16(bytes, QDCOUNT),
    ancount: u16(bytes, QDCOUNT + 2),
    nscount: u16(bytes, QDCOUNT + 4),
    arcount: u16(bytes, QDCOUNT + 6),
  };
}

/** Parses a whole message. Throws `WireError` naming the field and byte offset. Trailing bytes are ignored. */
export function parseDns(bytes: Uint8Array): DnsMessage {
  const { qdcount, ancount, nscount, arcount, ...header } = parseDnsHeader(bytes);
  let at = DNS_HEADER_LEN;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < qdcount; i++) {
    const n = readDnsName(bytes, at);
    if (n.end + 4 > bytes.length) {
      throw new WireError('dns', `question ${i + 1}`, at, `type and class need 4 bytes at ${n.end}, the message ends at ${bytes.length}`);
    }
    questions.push({ name: n.name, type: u16(bytes, n.end), class: u16(bytes, n.end + 2) });
    at = n.end + 4;
  }
  const section = (count: number, what: string): DnsRecord[] => {
    const out: DnsRecord[] = [];
    for (let i = 0; i < count; i++) {
      const r = readRecord(bytes, at, `${what} ${i + 1}`);
      out.push(r.record);
      at = r.end;
    }
    return out;
  };
  const answers = section(ancount, 'answer');
  const authorities = section(nscount, 'authority');
  const additionals = section(arcount, 'additional');
  return { ...header, questions, answers, authorities, additionals };
}

function readRecord(bytes: Uint8Array, start: number, what: string): { record: DnsRecord; end: number } {
  const n = readDnsName(bytes, start);
  const at = n.end;
  if (at + 10 > bytes.length) {
    throw new WireError('dns', what, start, `type, class, ttl and rdlength need 10 bytes at ${at}, the message ends at ${bytes.length}`);
  }
  const type = u16(bytes, at);
  const cls = u16(bytes, at + 2);
  const ttl = bytesToIpv4(bytes, at + 4);
  const rdlength = u16(bytes, at + 8);
  const rdata = at + 10;
  const end = rdata + rdlength;
  if (end > bytes.length) {
    throw new WireError('dns', 'rdlength', at + 8, `${what} claims ${rdlength} bytes of data, the message ends at ${bytes.length}`);
  }
  let data: DnsRecordData;
  if (type === DNS_TYPE_A && cls === DNS_CLASS_IN) {
    if (rdlength !== 4) throw new WireError('dns', 'rdlength', at + 8, `${what} is an A record of ${rdlength} bytes, expected 4`);
    data = { kind: 'a', address: bytesToIpv4(bytes, rdata) };
  } else if (NAME_TYPES.has(type)) {
    const target = readDnsName(bytes, rdata);
    if (target.end !== end) {
      throw new WireError('dns', 'rdata', rdata, `${what}: the name in the data ends at ${target.end}, rdlength says ${end}`);
    }
    data = { kind: 'name', name: target.name };
  } else {
    data = { kind: 'opaque', bytes: bytes.slice(rdata, end) };
  }
  return { record: { name: n.name, type, class: cls, ttl, data }, end };
}

/**
 * Reads the name at `offset`, following compression pointers. `end` is where the name ends in place
 * (after its 0 byte or its first pointer), which is where the caller's next field starts.
 */
export function readDnsName(bytes: Uint8Array, offset: number): { name: string; end: number } {
  // A negative or fractional offset reads `undefined` bytes, which pass every check below and loop forever.
  if (!Number.isInteger(offset) || offset < 0) throw new WireError('dns', 'name', offset, `offset ${offset} is not a byte offset`);
  const labels: string[] = [];
  const visited = new Set<number>();
  let at = offset;
  let end = -1;
  let wireLen = 1;
  for (;;) {
    if (at >= bytes.length) throw new WireError('dns', 'name', at, `name runs past the end of the ${bytes.length}-byte message`);
    const len = bytes[at];
    if ((len & POINTER) === POINTER) {
      if (at + 1 >= bytes.length) throw new WireError('dns', 'name pointer', at, `pointer is cut off by the end of the message`);
      const target = ((len & 0x3f) << 8) | bytes[at + 1];
      if (end < 0) end = at + 2;
      if (target >= bytes.length) {
        throw new WireError('dns', 'name pointer', at, `points to offset ${target}, past the end of the ${bytes.length}-byte message`);
      }
      if (visited.has(target)) throw new WireError('dns', 'name pointer', at, `pointer loop: offset ${target} was already visited`);
      visited.add(target);
      at = target;
      continue;
    }
    if ((len & POINTER) !== 0) {
      throw new WireError('dns', 'label', at, `label type 0x${(len & POINTER).toString(16)} is not a length or a pointer`);
    }
    if (len === 0) break;
    if (at + 1 + len > bytes.length) {
      throw new WireError('dns', 'label', at, `label of ${len} bytes runs past the end of the ${bytes.length}-byte message`);
    }
    wireLen += 1 + len;
    if (wireLen > DNS_MAX_NAME_LEN) throw new WireError('dns', 'name', offset, `name is longer than ${DNS_MAX_NAME_LEN} bytes`);
    labels.push(labelText(bytes, at + 1, len));
    at += 1 + len;
  }
  return { name: labels.join('.'), end: end < 0 ? at + 1 : end };
}

// --- write ----------------------------------------------------------------------------------------

/** A new buffer holding the message, names compressed. Throws `WireError` for an unrepresentable field. */
export function encodeDns(msg: DnsMessage): Uint8Array {
  const len = emitDns(msg, SCRATCH);
  return SCRATCH.slice(0, len);
}

/** Room for the largest message; reused because encoding is synchronous and the result is a copy. */
const SCRATCH = new Uint8Array(0xffff);

/** Writes the message at `buf[offset..)` and returns the bytes written; throws `WireError` if it does not fit. */
export function emitDns(msg: DnsMessage, buf: Uint8Array, offset = 0): number {
  const w = new Writer(buf, offset);
  checkUint('dns', 'id', offset + ID, msg.id, 0xffff);
  checkUint('dns', 'opcode', offset + FLAGS, msg.opcode, 0xf);
  checkUint('dns', 'rcode', offset + FLAGS, msg.rcode, 0xf);
  const flags = (msg.qr ? 0x8000 : 0) | (msg.opcode << 11) | (msg.aa ? 0x0400 : 0) | (msg.tc ? 0x0200 : 0)
    | (msg.rd ? 0x0100 : 0) | (msg.ra ? 0x0080 : 0) | (msg.z ? 0x0040 : 0) | (msg.ad ? 0x0020 : 0)
    | (msg.cd ? 0x0010 : 0) | msg.rcode;
  w.u16(msg.id);
  w.u16(flags);
  for (const [name, list] of [['qdcount', msg.questions], ['ancount', msg.answers], ['nscount', msg.authorities], ['arcount', msg.additionals]] as const) {
    checkUint('dns', name, w.at, list.length, 0xffff);
    w.u16(list.length);
  }
  for (const q of msg.questions) {
    w.name(q.name);
    checkUint('dns', 'question type', w.at, q.type, 0xffff);
    checkUint('dns', 'question class', w.at + 2, q.class, 0xffff);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const r of [...msg.answers, ...msg.authorities, ...msg.additionals]) w.record(r);
  return w.at - offset;
}

class Writer {
  at: number;
  /** Exact name text of every suffix written so far -> its offset from the message start. */
  readonly #names = new Map<string, number>();

  constructor(readonly buf: Uint8Array, readonly base: number) {
    this.at = base;
  }

  u16(v: number): void {
    checkRoom('dns', this.buf, this.at, 2);
    this.buf[this.at] = v >> 8;
    this.buf[this.at + 1] = v;
    this.at += 2;
  }

  bytes(b: Uint8Array): void {
    checkRoom('dns', this.buf, this.at, b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  name(text: string): void {
    const labels = dnsNameLabels(text, this.at);
    for (let i = 0; i < labels.length; i++) {
      const key = labels.slice(i).map((l) => String.fromCharCode(l.length) + Buffer.from(l).toString('latin1')).join('');
      const prior = this.#names.get(key);
      if (prior !== undefined) {
        this.u16(0xc000 | prior);
        return;
      }
      const off = this.at - this.base;
      if (off <= MAX_POINTER_TARGET) this.#names.set(key, off);
      checkRoom('dns', this.buf, this.at, 1 + labels[i].length);
      this.buf[this.at] = labels[i].length;
      this.buf.set(labels[i], this.at + 1);
      this.at += 1 + labels[i].length;
    }
    checkRoom('dns', this.buf, this.at, 1);
    this.buf[this.at++] = 0;
  }

  record(r: DnsRecord): void {
    this.name(r.name);
    checkUint('dns', 'type', this.at, r.type, 0xffff);
    checkUint('dns', 'class', this.at + 2, r.class, 0xffff);
    checkUint('dns', 'ttl', this.at + 4, r.ttl, 0xffffffff);
    this.u16(r.type);
    this.u16(r.class);
    checkRoom('dns', this.buf, this.at, 6);
    ipv4ToBytes(r.ttl, this.buf, this.at);
    this.at += 4;
    const lenAt = this.at;
    this.u16(0);
    const d = r.data;
    if (d.kind === 'a') {
      checkUint('dns', 'rdata', this.at, d.address, 0xffffffff);
      checkRoom('dns', this.buf, this.at, 4);
      ipv4ToBytes(d.address, this.buf, this.at);
      this.at += 4;
    } else if (d.kind === 'name') {
      this.name(d.name);
    } else {
      if (d.bytes.length > 0xffff) throw new WireError('dns', 'rdlength', lenAt, `rdata is ${d.bytes.length} bytes, at most 65535 fit`);
      this.bytes(d.bytes);
    }
    const rdlength = this.at - lenAt - 2;
    this.buf[lenAt] = rdlength >> 8;
    this.buf[lenAt + 1] = rdlength;
  }
}

// --- names ----------------------------------------------------------------------------------------

/**
 * The wire labels of a presentation-form name (a final dot is allowed; `''` and `'.'` are the root).
 * Throws `WireError` (offset `at`, where the name would be written) for an empty or over-long label or
 * name, or a bad escape.
 */
export function dnsNameLabels(text: string, at = 0): Uint8Array[] {
  if (text === '' || text === '.') return [];
  const labels: Uint8Array[] = [];
  let cur: number[] = [];
  let total = 1;
  const finish = () => {
    if (cur.length === 0) throw new WireError('dns', 'name', at, `empty label in "${text}"`);
    if (cur.length > DNS_MAX_LABEL_LEN) throw new WireError('dns', 'name', at, `label of ${cur.length} bytes in "${text}", at most ${DNS_MAX_LABEL_LEN}`);
    total += 1 + cur.length;
    labels.push(Uint8Array.from(cur));
    cur = [];
  };
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      finish();
      if (i === text.length - 1) break;
    } else if (c === 0x5c) {
      const d = /^\d{3}/.exec(text.slice(i + 1, i + 4));
      if (d) {
        const v = Number(d[0]);
        if (v > 255) throw new WireError('dns', 'name', at, `escape \\${d[0]} > 255 in "${text}"`);
        cur.push(v);
        i += 3;
      } else if (i + 1 < text.length) {
        cur.push(text.charCodeAt(++i) & 0xff);
      } else {
        throw new WireError('dns', 'name', at, `"${text}" ends in a lone backslash`);
      }
    } else {
      if (c > 0xff) throw new WireError('dns', 'name', at, `"${text}" has a character above 0xff; use \\DDD escapes for bytes`);
      cur.push(c);
    }
    if (i === text.length - 1) finish();
  }
  if (total > DNS_MAX_NAME_LEN) throw new WireError('dns', 'name', at, `"${text}" is ${total} bytes on the wire, at most ${DNS_MAX_NAME_LEN}`);
  return labels;
}

/** Lower-cases ASCII letters and drops a final dot: the form names are compared in (RFC 4343). */
export function canonicalDnsName(name: string): string {
  const n = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  return n.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** `4.3.2.1.in-addr.arpa` for 1.2.3.4 (RFC 1035 §3.5). */
export function reverseDnsName(address: number): string {
  return `${address & 0xff}.${(address >>> 8) & 0xff}.${(address >>> 16) & 0xff}.${address >>> 24}.in-addr.arpa`;
}

/** The address a full four-octet in-addr.arpa name stands for, or undefined for any other name. */
export function parseReverseDnsName(name: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa$/.exec(canonicalDnsName(name));
  if (!m) return undefined;
  const o = m.slice(1).map(Number);
  if (o.some((v, i) => v > 255 || (m[i + 1].length > 1 && m[i + 1][0] === '0'))) return undefined;
  return ((o[3] << 24) | (o[2] << 16) | (o[1] << 8) | o[0]) >>> 0;
}

function labelText(bytes: Uint8Array, at: number, len: number): string {
  let s = '';
  for (let i = at; i < at + len; i++) {
    const c = bytes[i];
    if (c === 0x2e || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\${String(c).padStart(3, '0')}`;
  }
  return s;
}

function u16(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 8) | bytes[at + 1];
}
