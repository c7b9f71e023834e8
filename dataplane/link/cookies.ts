/**
 * mac1, mac2 and cookies (WireGuard §5.4.4 and §5.4.7, with BLAKE2b in place of BLAKE2s).
 *
 * - mac1 = BLAKE2b-128(key = BLAKE2b-256("mac1----" || receiver static public), message before mac1).
 *   Anyone can compute it who knows the receiver's public key; it lets the receiver drop junk and
 *   messages meant for another key without any Diffie-Hellman work.
 * - cookie = BLAKE2b-128(key = secret rotated every 2 minutes, "address:port" of the sender). Only the
 *   responder can compute it; holding it proves the sender receives packets at that address.
 * - mac2 = BLAKE2b-128(key = cookie, message before mac2), or 16 zero bytes when there is no cookie.
 * - A cookie travels in a cookie reply encrypted with XChaCha20-Poly1305 under
 *   BLAKE2b-256("cookie--" || responder static public), AD = the mac1 of the message that triggered it,
 *   so only the host that sent that message can use the cookie.
 *
 * sodium-native (libsodium compiled for Node, a direct dependency): the same library noise-handshake
 * already loads for the Noise handshake (through sodium-universal), so the daemon carries one libsodium,
 * not also libsodium-wrappers' WebAssembly build (~13 MB of RSS, issue 4's budget is 100 MB).
 */
import { createRequire } from 'node:module';
import { COOKIE_NONCE_LEN, MAC_LEN } from './messages.ts';

/** The few sodium-native calls used here (it ships no types): outputs are caller-allocated buffers. */
interface SodiumNative {
  crypto_generichash(out: Uint8Array, input: Uint8Array, key?: Uint8Array): void;
  crypto_aead_xchacha20poly1305_ietf_encrypt(c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, k: Uint8Array): number;
  crypto_aead_xchacha20poly1305_ietf_decrypt(m: Uint8Array, nsec: null, c: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array): number;
  crypto_aead_xchacha20poly1305_ietf_ABYTES: number;
  sodium_memcmp(a: Uint8Array, b: Uint8Array): boolean;
}
const sodium = createRequire(import.meta.url)('sodium-native') as SodiumNative;
const AEAD_TAG = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES;

function hash(len: number, input: Uint8Array, key?: Uint8Array): Uint8Array {
  const out = new Uint8Array(len);
  if (key) sodium.crypto_generichash(out, input, key);
  else sodium.crypto_generichash(out, input);
  return out;
}

export const COOKIE_SECRET_ROTATE_MS = 120_000;
/** How long an initiator uses a cookie it received. */
export const COOKIE_LIFETIME_MS = 120_000;
export const COOKIE_LEN = 16;

const LABEL_MAC1 = new TextEncoder().encode('mac1----');
const LABEL_COOKIE = new TextEncoder().encode('cookie--');

export const ZERO_MAC = new Uint8Array(MAC_LEN);

function labelledKey(label: Uint8Array, publicKey: Uint8Array): Uint8Array {
  const m = new Uint8Array(label.length + publicKey.length);
  m.set(label);
  m.set(publicKey, label.length);
  return hash(32, m);
}

/** Key for mac1 of messages sent to the holder of `receiverPublic`. */
export function mac1Key(receiverPublic: Uint8Array): Uint8Array {
  return labelledKey(LABEL_MAC1, receiverPublic);
}

/** Key that encrypts cookies issued by the holder of `responderPublic`. */
export function cookieKey(responderPublic: Uint8Array): Uint8Array {
  return labelledKey(LABEL_COOKIE, responderPublic);
}

export function mac(key: Uint8Array, covered: Uint8Array): Uint8Array {
  return hash(MAC_LEN, covered, key);
}

/** Constant-time equality of two MACs (a MAC compared byte by byte leaks how much of it was right). */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && sodium.sodium_memcmp(a, b);
}

export function isZero(b: Uint8Array): boolean {
  let acc = 0;
  for (const x of b) acc |= x;
  return acc === 0;
}

/** Encrypts `cookie` for the initiator; returns the nonce and the 32-byte ciphertext+tag. */
export function sealCookie(key: Uint8Array, cookie: Uint8Array, mac1: Uint8Array, nonce: Uint8Array):
    { nonce: Uint8Array; encryptedCookie: Uint8Array } {
  if (nonce.length !== COOKIE_NONCE_LEN) throw new RangeError(`cookie nonce must be ${COOKIE_NONCE_LEN} bytes`);
  const encryptedCookie = new Uint8Array(cookie.length + AEAD_TAG);
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(encryptedCookie, cookie, mac1, null, nonce, key);
  return { nonce, encryptedCookie };
}

/** The cookie, or null when the reply does not authenticate (not for our last mac1, or forged). */
export function openCookie(key: Uint8Array, encryptedCookie: Uint8Array, mac1: Uint8Array, nonce: Uint8Array): Uint8Array | null {
  if (encryptedCookie.length !== COOKIE_LEN + AEAD_TAG) return null;
  const c = new Uint8Array(COOKIE_LEN);
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(c, null, encryptedCookie, mac1, nonce, key);
  } catch {
    return null;  // sodium-native throws when the tag does not verify
  }
  return c;
}

/**
 * The responder's cookie secret. It rotates lazily, on first use 2 minutes after the last rotation,
 * and the previous secret stays valid until the next rotation: a cookie made just before a rotation
 * is then honoured for its whole 120 s lifetime at the initiator.
 */
export class CookieJar {
  private current: Uint8Array;
  private previous: Uint8Array | null = null;
  private rotatedMs: number;

  constructor(private readonly random: (n: number) => Uint8Array, now: number) {
    this.current = random(32);
    this.rotatedMs = now;
  }

  /** The cookie a sender at `source` should hold now. */
  cookieFor(source: string, now: number): Uint8Array {
    this.rotate(now);
    return mac(this.current, new TextEncoder().encode(source));
  }

  /** Whether `mac2` over `covered` was made with a cookie we issued to `source` and still honour. */
  checkMac2(source: string, covered: Uint8Array, mac2: Uint8Array, now: number): boolean {
    this.rotate(now);
    const src = new TextEncoder().encode(source);
    for (const secret of [this.current, this.previous]) {
      if (secret !== null && macEqual(mac(mac(secret, src), covered), mac2)) return true;
    }
    return false;
  }

  private rotate(now: number): void {
    if (now - this.rotatedMs < COOKIE_SECRET_ROTATE_MS) return;
    this.previous = this.current;
    this.current = this.random(32);
    this.rotatedMs = now;
  }
}

/** `address:port`, the identity a cookie is bound to. */
export function sourceKey(from: { address: string; port: number }): string {
  return `${from.address}:${from.port}`;
}
