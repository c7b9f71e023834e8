/**
 * Encrypted link transport: the data message (type 4) that carries one VXLAN datagram between hosts,
 * and its replay window. The TypeScript reference of native/src/link_crypto.{h,cc} and replay.h;
 * docs/link-transport.md is the operator's description.
 *
 * ```
 *  0       1                       4                               8                               16
 * +-------+-----------------------+-------------------------------+-------------------------------+
 * | type  |       reserved        |     receiver (u32 LE)         |       counter (u64 LE)        |
 * |   4   |       0  0  0         |  receiver's session index     |  per-session, from 0          |
 * +-------+-----------------------+-------------------------------+-------------------------------+
 * | ciphertext of the plaintext (VXLAN header + inner frame; empty for a keepalive) ...           |
 * +-----------------------------------------------------------------------------------------------+
 * | Poly1305 tag (16 bytes)                                                                       |
 * +-----------------------------------------------------------------------------------------------+
 * ```
 * AEAD ChaCha20-Poly1305-IETF; nonce = 4 zero bytes || counter u64 LE; associated data = the 16
 * header bytes. `sealData`/`openData` are compared byte for byte with the native functions by
 * test/17-link-crypto.test.ts: change them only together with the C++ code.
 *
 * The AEAD is sodium-native's (libsodium compiled for Node, loaded synchronously): the same library the
 * handshake and cookies use, so the daemon carries one libsodium.
 */
import { createRequire } from 'node:module';
import { WireError, checkRoom, checkUint } from './errors.ts';

/** The sodium-native calls used here (it ships no types): outputs are caller-allocated buffers. */
interface SodiumAead {
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(c: Uint8Array, mac: Uint8Array, m: Uint8Array, ad: Uint8Array | null,
    nsec: null, npub: Uint8Array, k: Uint8Array): number;
  /** Throws when the tag does not verify. */
  crypto_aead_chacha20poly1305_ietf_decrypt_detached(m: Uint8Array, nsec: null, c: Uint8Array, mac: Uint8Array,
    ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array): void;
}
const sodium = createRequire(import.meta.url)('sodium-native') as SodiumAead;

/** Default UDP port of encrypted links (not VXLAN's 4789: the two must never be confused). */
export const LINK_UDP_PORT = 51830;
export const LINK_HEADER_LEN = 16;
export const LINK_TAG_LEN = 16;
/** Bytes a data message adds to the VXLAN datagram it carries. */
export const LINK_OVERHEAD = LINK_HEADER_LEN + LINK_TAG_LEN;
export const LINK_KEY_LEN = 32;

/** Message types; 1..3 are the handshake's (docs/link-handshake.md). */
export const LINK_TYPE_INIT = 1;
export const LINK_TYPE_RESP = 2;
export const LINK_TYPE_COOKIE = 3;
export const LINK_TYPE_DATA = 4;

/** A session asks for a new handshake once its send counter reaches this (WireGuard's figure). */
export const REKEY_AFTER_MESSAGES = 1n << 60n;
/** No counter at or above this is ever sent or accepted: 2^64 - 2^13 - 1. */
export const REJECT_AFTER_MESSAGES = (1n << 64n) - (1n << 13n) - 1n;

const TYPE = 0;
const RESERVED = 1;
const RECEIVER = 4;
const COUNTER = 8;
const NONCE_LEN = 12;
const U64_MAX = (1n << 64n) - 1n;

export interface LinkDataHeader {
  /** The receiver's session index, 0..2^32-1. */
  receiver: number;
  /** The sender's counter, which is also the nonce, 0n..REJECT_AFTER_MESSAGES-1n. */
  counter: bigint;
}

/** Checked view over a data message (the UDP payload). */
export class LinkDataView {
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    LinkDataView.check(bytes);
    this.bytes = bytes;
  }

  /** Throws `WireError` unless the message is long enough for header and tag, type 4 and reserved zero. */
  static check(bytes: Uint8Array): void {
    const error = headerError(bytes);
    if (error === 'short') {
      throw new WireError('link', 'length', 0,
        `message is ${bytes.length} bytes, a data message needs at least ${LINK_OVERHEAD} (header + tag)`);
    }
    if (error === 'type') {
      throw new WireError('link', 'type', TYPE, `type ${bytes[TYPE]}, expected ${LINK_TYPE_DATA} (data)`);
    }
    if (error === 'reserved') {
      const i = [1, 2, 3].find((k) => bytes[k] !== 0) ?? RESERVED;
      throw new WireError('link', 'reserved', i, `reserved byte is ${bytes[i]}, expected 0`);
    }
  }

  get receiver(): number { return view(this.bytes).getUint32(RECEIVER, true); }
  get counter(): bigint { return view(this.bytes).getBigUint64(COUNTER, true); }
  /** The 16 clear bytes, which are also the associated data. */
  get header(): Uint8Array { return this.bytes.subarray(0, LINK_HEADER_LEN); }
  get ciphertext(): Uint8Array { return this.bytes.subarray(LINK_HEADER_LEN, this.bytes.length - LINK_TAG_LEN); }
  get tag(): Uint8Array { return this.bytes.subarray(this.bytes.length - LINK_TAG_LEN); }
}

/** Parses the clear header; throws `WireError` naming the field (length, type, reserved). */
export function parseLinkDataHeader(bytes: Uint8Array): LinkDataHeader {
  const v = new LinkDataView(bytes);
  return { receiver: v.receiver, counter: v.counter };
}

/** Writes the 16-byte header at `buf[offset..)` and returns 16. */
export function emitLinkDataHeader(h: LinkDataHeader, buf: Uint8Array, offset = 0): number {
  checkUint('link', 'receiver', offset + RECEIVER, h.receiver, 0xffffffff);
  checkCounter(h.counter, offset + COUNTER);
  checkRoom('link', buf, offset, LINK_HEADER_LEN);
  buf.fill(0, offset, offset + RECEIVER);
  buf[offset + TYPE] = LINK_TYPE_DATA;
  const dv = view(buf);
  dv.setUint32(offset + RECEIVER, h.receiver, true);
  dv.setBigUint64(offset + COUNTER, h.counter, true);
  return LINK_HEADER_LEN;
}

/**
 * Differential-test contract: returns header ++ ciphertext ++ tag, `plaintext.length + 32` bytes.
 * Throws `TypeError` for a key that is not 32 bytes, `WireError` (field `receiver` or `counter`) for
 * values the header cannot carry or a counter >= REJECT_AFTER_MESSAGES (the session must rekey).
 */
export function sealData(key: Uint8Array, receiver: number, counter: bigint, plaintext: Uint8Array): Uint8Array {
  checkKey(key);
  const out = new Uint8Array(plaintext.length + LINK_OVERHEAD);
  emitLinkDataHeader({ receiver, counter }, out);
  const ad = out.subarray(0, LINK_HEADER_LEN);
  sodium.crypto_aead_chacha20poly1305_ietf_encrypt_detached(out.subarray(LINK_HEADER_LEN, LINK_HEADER_LEN + plaintext.length),
    out.subarray(LINK_HEADER_LEN + plaintext.length), plaintext, ad, null, nonceOf(counter), key);
  return out;
}

/** Why `openData` refused a message, in the order the checks run. */
export type LinkOpenError = 'short' | 'type' | 'reserved' | 'tag';

export type LinkOpenResult =
  | { receiver: number; counter: bigint; plaintext: Uint8Array }
  | { error: LinkOpenError };

/**
 * Differential-test contract. Never throws for any message (a key that is not 32 bytes is a
 * `TypeError`). Rules, first match wins:
 * 1. length < 32                                → "short"
 * 2. byte 0 != 4                                → "type"
 * 3. any of bytes 1..3 != 0                     → "reserved"
 * 4. tag does not verify (key, header, ct, tag) → "tag"
 * The replay window is not consulted: check it before, mark it after a successful open.
 */
export function openData(key: Uint8Array, message: Uint8Array): LinkOpenResult {
  checkKey(key);
  const error = headerError(message);
  if (error) return { error };
  const v = new LinkDataView(message);
  const plaintext = new Uint8Array(v.ciphertext.length);
  try {
    sodium.crypto_aead_chacha20poly1305_ietf_decrypt_detached(plaintext, null, v.ciphertext, v.tag, v.header, nonceOf(v.counter), key);
  } catch {
    return { error: 'tag' };
  }
  return { receiver: v.receiver, counter: v.counter, plaintext };
}

/** Bits in the replay bitmap, and the 64-bit blocks that make it up (RFC 6479). */
export const REPLAY_BITMAP_BITS = 4096;
const BLOCK_BITS_LOG = 6n;
const BLOCKS = REPLAY_BITMAP_BITS / 64;
/**
 * How far behind the highest accepted counter a counter may be and still be accepted: one block of
 * the ring is always being recycled, so (64 - 1) * 64 = 4032.
 */
export const REPLAY_WINDOW = (BLOCKS - 1) * 64;

/**
 * RFC 6479 anti-replay window, the same algorithm as native/src/replay.h: a ring of 64 blocks of 64
 * bits; moving forward clears only the blocks skipped over. `c` is accepted iff
 * c < REJECT_AFTER_MESSAGES, it was not accepted before, and c > highest or highest - c <= 4032.
 */
export class ReplayWindow {
  private last = 0n;
  private readonly ring = new BigUint64Array(BLOCKS);

  /** Forgets every counter (a new session). */
  reset(): void {
    this.last = 0n;
    this.ring.fill(0n);
  }

  /** Would `mark(c)` accept c? Does not change the window. */
  check(c: bigint): boolean {
    checkCounterArg(c);
    if (c >= REJECT_AFTER_MESSAGES) return false;
    if (c > this.last) return true;
    if (this.last - c > BigInt(REPLAY_WINDOW)) return false;
    return (this.ring[blockOf(c)] & bitOf(c)) === 0n;
  }

  /** Accepts and records c; false if it is a replay, too old, or at/over REJECT_AFTER_MESSAGES. */
  mark(c: bigint): boolean {
    checkCounterArg(c);
    if (c >= REJECT_AFTER_MESSAGES) return false;
    if (c > this.last) {
      const cur = this.last >> BLOCK_BITS_LOG;
      let diff = (c >> BLOCK_BITS_LOG) - cur;
      if (diff > BigInt(BLOCKS)) diff = BigInt(BLOCKS);
      for (let i = 1n; i <= diff; i++) this.ring[Number((cur + i) % BigInt(BLOCKS))] = 0n;
      this.last = c;
    } else if (this.last - c > BigInt(REPLAY_WINDOW)) {
      return false;
    }
    const b = blockOf(c);
    const bit = bitOf(c);
    if (this.ring[b] & bit) return false;
    this.ring[b] |= bit;
    return true;
  }

  /** Highest accepted counter (0n before any). */
  get highest(): bigint { return this.last; }
}

function blockOf(c: bigint): number { return Number((c >> BLOCK_BITS_LOG) % BigInt(BLOCKS)); }
function bitOf(c: bigint): bigint { return 1n << (c & 63n); }

function headerError(bytes: Uint8Array): Exclude<LinkOpenError, 'tag'> | undefined {
  if (bytes.length < LINK_OVERHEAD) return 'short';
  if (bytes[TYPE] !== LINK_TYPE_DATA) return 'type';
  if (bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) return 'reserved';
  return undefined;
}

function nonceOf(counter: bigint): Uint8Array {
  const n = new Uint8Array(NONCE_LEN);
  view(n).setBigUint64(4, counter, true);
  return n;
}

function view(b: Uint8Array): DataView { return new DataView(b.buffer, b.byteOffset, b.byteLength); }

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== LINK_KEY_LEN) {
    throw new TypeError(`link: key must be ${LINK_KEY_LEN} bytes, got ${key instanceof Uint8Array ? key.length : typeof key}`);
  }
}

function checkCounter(counter: bigint, offset: number): void {
  if (typeof counter !== 'bigint' || counter < 0n || counter > U64_MAX) {
    throw new WireError('link', 'counter', offset, `${String(counter)} is not a bigint in 0n..2n**64n-1n`);
  }
  if (counter >= REJECT_AFTER_MESSAGES) {
    throw new WireError('link', 'counter', offset,
      `${counter} is at or above REJECT_AFTER_MESSAGES (2^64 - 2^13 - 1): the session must rekey`);
  }
}

function checkCounterArg(c: bigint): void {
  if (typeof c !== 'bigint' || c < 0n || c > U64_MAX) {
    throw new TypeError(`counter must be a bigint in 0n..2n**64n-1n, got ${String(c)}`);
  }
}
