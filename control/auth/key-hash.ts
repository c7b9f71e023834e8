// Namespace keys are stored only as libsodium `crypto_pwhash_str` strings (Argon2id, the
// "interactive" limits: 2 passes over 64 MiB), as Shaken Fist stores them with bcrypt. The async
// variants run on libuv's thread pool, so a burst of POST /auth does not stall the event loop;
// /auth is rate-limited per source (rate-limit.ts) so the pool cannot be flooded either.
import { createRequire } from 'node:module';

interface SodiumPwhash {
  crypto_pwhash_OPSLIMIT_INTERACTIVE: number;
  crypto_pwhash_MEMLIMIT_INTERACTIVE: number;
  crypto_pwhash_STRBYTES: number;
  crypto_pwhash_str_async(out: Buffer, passwd: Buffer, ops: number, mem: number): Promise<void>;
  crypto_pwhash_str_verify_async(str: Buffer, passwd: Buffer): Promise<boolean>;
}

const sodium = createRequire(import.meta.url)('sodium-native') as SodiumPwhash;

/** The storable hash of `key` (an `$argon2id$...` string). */
export async function hashKey(key: string): Promise<string> {
  const out = Buffer.alloc(sodium.crypto_pwhash_STRBYTES);
  await sodium.crypto_pwhash_str_async(out, Buffer.from(key, 'utf8'), sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE, sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE);
  return out.toString('utf8').replace(/\0+$/, '');
}

/** True when `key` matches `hash`; false for a wrong key or a hash that is not a pwhash string. */
export async function verifyKey(hash: string, key: string): Promise<boolean> {
  const str = Buffer.alloc(sodium.crypto_pwhash_STRBYTES);
  if (Buffer.byteLength(hash) >= str.length) return false;
  str.write(hash, 'utf8');
  try {
    return await sodium.crypto_pwhash_str_verify_async(str, Buffer.from(key, 'utf8'));
  } catch {
    return false;
  }
}
