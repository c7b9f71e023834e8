/**
 * Opening encrypted link data messages for display (the decoder's read-only view of the transport).
 *
 * ```
 * 0 type u8 = 4 | 1 reserved 3 B zero | 4 receiver u32 LE | 8 counter u64 LE | 16 ciphertext | tag 16 B
 * ```
 * ChaCha20-Poly1305-IETF, nonce = 4 zero bytes || counter u64 LE, associated data = the 16 clear bytes.
 * Loading libsodium is asynchronous, so this module waits for it once at import time and everything
 * after that is synchronous.
 */
import sodium from 'libsodium-wrappers';

await sodium.ready;

export const LINK_HEADER_LEN = 16;
export const LINK_TAG_LEN = 16;
export const LINK_TYPE_INITIATION = 1;
export const LINK_TYPE_RESPONSE = 2;
export const LINK_TYPE_COOKIE = 3;
export const LINK_TYPE_DATA = 4;

export const LINK_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: 'handshake initiation', 2: 'handshake response', 3: 'cookie reply', 4: 'data',
};

/** The plaintext (VXLAN header + inner frame), or null when the tag does not verify with `key`. */
export function openLinkData(key: Uint8Array, message: Uint8Array): Uint8Array | null {
  if (message.length < LINK_HEADER_LEN + LINK_TAG_LEN) return null;
  const nonce = new Uint8Array(12);
  nonce.set(message.subarray(8, 16), 4);
  try {
    return sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
      null, message.subarray(LINK_HEADER_LEN), message.subarray(0, LINK_HEADER_LEN), nonce, key);
  } catch {
    return null;
  }
}
