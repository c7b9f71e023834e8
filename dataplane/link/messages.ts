/**
 * The three link handshake messages (types 1-3) on the link UDP port. Type 4 (data) belongs to the
 * transport; see docs/link-transport.md. All four share the first 4 bytes: type u8, then 3 zero bytes.
 * Integers are little-endian, as in WireGuard, whose layout these follow byte for byte.
 *
 * ```
 * type 1 initiation (148)      type 2 response (92)         type 3 cookie reply (64)
 *   0 type=1, 0, 0, 0            0 type=2, 0, 0, 0            0 type=3, 0, 0, 0
 *   4 sender index u32           4 sender index u32           4 receiver index u32
 *   8 noise msg 1 (108):         8 receiver index u32         8 nonce (24)
 *       e 32, enc s 48,         12 noise msg 2 (48):         32 encrypted cookie 16 + tag 16
 *       enc TAI64N 12 + tag 16       e 32, empty payload tag 16
 * 116 mac1 (16)                 60 mac1 (16)
 * 132 mac2 (16)                 76 mac2 (16)
 * ```
 * Lengths are exact: a message of any other length is malformed, which keeps parsing total and cheap.
 * Parsed fields are views into the input, not copies.
 */
import { WireError, checkRoom, checkUint } from '../wire/errors.ts';

export const LINK_UDP_PORT = 51830;

export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_COOKIE_REPLY = 3;
export const MSG_DATA = 4;

export const INITIATION_LEN = 148;
export const RESPONSE_LEN = 92;
export const COOKIE_REPLY_LEN = 64;

export const MAC_LEN = 16;
export const NOISE_MSG1_LEN = 32 + 48 + 12 + 16;
export const NOISE_MSG2_LEN = 32 + 16;
export const COOKIE_NONCE_LEN = 24;
export const ENCRYPTED_COOKIE_LEN = 16 + 16;

/** Byte offsets, named once; `handshaker.ts` uses the mac offsets to know what each MAC covers. */
export const INITIATION = { senderIndex: 4, noise: 8, mac1: 116, mac2: 132 } as const;
export const RESPONSE = { senderIndex: 4, receiverIndex: 8, noise: 12, mac1: 60, mac2: 76 } as const;
export const COOKIE_REPLY = { receiverIndex: 4, nonce: 8, cookie: 32 } as const;

export interface InitiationRepr {
  senderIndex: number;
  /** Noise IK message 1, 108 bytes. */
  noise: Uint8Array;
  mac1: Uint8Array;
  mac2: Uint8Array;
}

export interface ResponseRepr {
  senderIndex: number;
  receiverIndex: number;
  /** Noise IK message 2, 48 bytes. */
  noise: Uint8Array;
  mac1: Uint8Array;
  mac2: Uint8Array;
}

export interface CookieReplyRepr {
  receiverIndex: number;
  nonce: Uint8Array;
  /** XChaCha20-Poly1305 ciphertext of the 16-byte cookie, tag included. */
  encryptedCookie: Uint8Array;
}

/** The message type byte, or -1 for an empty datagram; does not validate the rest. */
export function linkMessageType(bytes: Uint8Array): number {
  return bytes.length === 0 ? -1 : bytes[0];
}

export function parseInitiation(bytes: Uint8Array): InitiationRepr {
  checkHeader('link-initiation', bytes, MSG_INITIATION, INITIATION_LEN);
  return {
    senderIndex: readU32(bytes, INITIATION.senderIndex),
    noise: bytes.subarray(INITIATION.noise, INITIATION.mac1),
    mac1: bytes.subarray(INITIATION.mac1, INITIATION.mac2),
    mac2: bytes.subarray(INITIATION.mac2, INITIATION_LEN),
  };
}

export function parseResponse(bytes: Uint8Array): ResponseRepr {
  checkHeader('link-response', bytes, MSG_RESPONSE, RESPONSE_LEN);
  return {
    senderIndex: readU32(bytes, RESPONSE.senderIndex),
    receiverIndex: readU32(bytes, RESPONSE.receiverIndex),
    noise: bytes.subarray(RESPONSE.noise, RESPONSE.mac1),
    mac1: bytes.subarray(RESPONSE.mac1, RESPONSE.mac2),
    mac2: bytes.subarray(RESPONSE.mac2, RESPONSE_LEN),
  };
}

export function parseCookieReply(bytes: Uint8Array): CookieReplyRepr {
  checkHeader('link-cookie-reply', bytes, MSG_COOKIE_REPLY, COOKIE_REPLY_LEN);
  return {
    receiverIndex: readU32(bytes, COOKIE_REPLY.receiverIndex),
    nonce: bytes.subarray(COOKIE_REPLY.nonce, COOKIE_REPLY.cookie),
    encryptedCookie: bytes.subarray(COOKIE_REPLY.cookie, COOKIE_REPLY_LEN),
  };
}

/** Returns a new 148-byte initiation. MACs are written as given (the handshaker fills them in place). */
export function emitInitiation(repr: InitiationRepr): Uint8Array {
  const p = 'link-initiation';
  const out = new Uint8Array(INITIATION_LEN);
  writeHeader(out, MSG_INITIATION);
  writeU32(p, 'sender_index', out, INITIATION.senderIndex, repr.senderIndex);
  put(p, 'noise', out, INITIATION.noise, repr.noise, NOISE_MSG1_LEN);
  put(p, 'mac1', out, INITIATION.mac1, repr.mac1, MAC_LEN);
  put(p, 'mac2', out, INITIATION.mac2, repr.mac2, MAC_LEN);
  return out;
}

export function emitResponse(repr: ResponseRepr): Uint8Array {
  const p = 'link-response';
  const out = new Uint8Array(RESPONSE_LEN);
  writeHeader(out, MSG_RESPONSE);
  writeU32(p, 'sender_index', out, RESPONSE.senderIndex, repr.senderIndex);
  writeU32(p, 'receiver_index', out, RESPONSE.receiverIndex, repr.receiverIndex);
  put(p, 'noise', out, RESPONSE.noise, repr.noise, NOISE_MSG2_LEN);
  put(p, 'mac1', out, RESPONSE.mac1, repr.mac1, MAC_LEN);
  put(p, 'mac2', out, RESPONSE.mac2, repr.mac2, MAC_LEN);
  return out;
}

export function emitCookieReply(repr: CookieReplyRepr): Uint8Array {
  const p = 'link-cookie-reply';
  const out = new Uint8Array(COOKIE_REPLY_LEN);
  writeHeader(out, MSG_COOKIE_REPLY);
  writeU32(p, 'receiver_index', out, COOKIE_REPLY.receiverIndex, repr.receiverIndex);
  put(p, 'nonce', out, COOKIE_REPLY.nonce, repr.nonce, COOKIE_NONCE_LEN);
  put(p, 'encrypted_cookie', out, COOKIE_REPLY.cookie, repr.encryptedCookie, ENCRYPTED_COOKIE_LEN);
  return out;
}

function checkHeader(protocol: string, bytes: Uint8Array, type: number, len: number): void {
  if (bytes.length !== len) {
    throw new WireError(protocol, 'length', 0, `message is ${bytes.length} bytes, expected exactly ${len}`);
  }
  if (bytes[0] !== type) throw new WireError(protocol, 'type', 0, `type ${bytes[0]}, expected ${type}`);
  for (let i = 1; i < 4; i++) {
    if (bytes[i] !== 0) throw new WireError(protocol, 'reserved', i, `reserved byte is ${bytes[i]}, expected 0`);
  }
}

function writeHeader(out: Uint8Array, type: number): void {
  out[0] = type;
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
}

function readU32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

function writeU32(protocol: string, field: string, b: Uint8Array, o: number, v: number): void {
  checkUint(protocol, field, o, v, 0xffffffff);
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}

function put(protocol: string, field: string, out: Uint8Array, o: number, value: Uint8Array, len: number): void {
  if (value.length !== len) {
    throw new WireError(protocol, field, o, `${field} is ${value.length} bytes, expected ${len}`);
  }
  checkRoom(protocol, out, o, len);
  out.set(value, o);
}
