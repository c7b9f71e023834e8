/**
 * The host's static X25519 key pair and its file (the only I/O in dataplane/link).
 *
 * File format, JSON, mode 0600, in a directory created 0700 if missing:
 *   {"type":"appnet-link-x25519","publicKey":"<base64, 32 bytes>","secretKey":"<base64, 32 bytes>"}
 * The public key is stored for operators to read (`appnet` shows it), and checked against the secret
 * on load so a hand-edited or truncated file is refused instead of silently making a different host.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { KeyPair } from './noise-ik.ts';

const FILE_TYPE = 'appnet-link-x25519';
// PKCS#8 DER prefix of an X25519 private key (RFC 8410); the 32 raw secret bytes follow.
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export function generateKeyPair(): KeyPair {
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return { publicKey: fromBase64url(jwk.x!), secretKey: fromBase64url(jwk.d!) };
}

/** The public key belonging to a 32-byte X25519 secret. */
export function publicKeyOf(secretKey: Uint8Array): Uint8Array {
  if (secretKey.length !== 32) throw new RangeError(`X25519 secret key is ${secretKey.length} bytes, expected 32`);
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, secretKey]), format: 'der', type: 'pkcs8' });
  return fromBase64url(createPublicKey(priv).export({ format: 'jwk' }).x!);
}

/**
 * Reads the key pair at `path`, or creates it on first use. Throws (naming the path) if the file is
 * readable or writable by group or others, or is not a key file this function wrote.
 */
export function loadOrCreateKeyPair(path: string): KeyPair {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return create(path);
  }
  if ((mode & 0o077) !== 0) {
    throw new Error(`link key file ${path} has mode ${(mode & 0o777).toString(8)}: it must not be accessible to group or others; run chmod 600 ${path}`);
  }
  return parse(path, readFileSync(path, 'utf8'));
}

function create(path: string): KeyPair {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const kp = generateKeyPair();
  const body = JSON.stringify({ type: FILE_TYPE, publicKey: toBase64(kp.publicKey), secretKey: toBase64(kp.secretKey) });
  try {
    // 'wx': never overwrite a key another process created meanwhile; use that one instead.
    writeFileSync(path, body + '\n', { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateKeyPair(path);
    throw e;
  }
  return kp;
}

function parse(path: string, text: string): KeyPair {
  const bad = (why: string) => new Error(`link key file ${path} is malformed: ${why}; move it away to generate a new key (peers must then be told the new public key)`);
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  const o = j as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || o.type !== FILE_TYPE) throw bad(`"type" is not "${FILE_TYPE}"`);
  const publicKey = key32(o.publicKey);
  const secretKey = key32(o.secretKey);
  if (publicKey === null) throw bad('"publicKey" is not 32 bytes of base64');
  if (secretKey === null) throw bad('"secretKey" is not 32 bytes of base64');
  if (!Buffer.from(publicKeyOf(secretKey)).equals(publicKey)) throw bad('"publicKey" does not belong to "secretKey"');
  return { publicKey, secretKey };
}

function key32(v: unknown): Uint8Array | null {
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(v)) return null;
  return fromBase64(v);
}

export function toBase64(b: Uint8Array): string {
  return Buffer.from(b).toString('base64');
}

/** Strict: throws unless `s` is base64 of exactly 32 bytes (the form operators paste around). */
export function publicKeyFromBase64(s: string): Uint8Array {
  const k = key32(s.trim());
  if (k === null) throw new Error(`"${s}" is not a base64 X25519 public key (44 characters ending in "=")`);
  return k;
}

function fromBase64(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, 'base64'));
}

function fromBase64url(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, 'base64url'));
}
