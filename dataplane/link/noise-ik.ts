/**
 * Noise_IK_25519_ChaChaPoly_BLAKE2b over the `noise-handshake` package, reduced to the two calls each
 * side makes. The package has no type declarations and its `recv` mutates state even when decryption
 * fails; this file is the one place that knows both facts.
 *
 * Ephemeral keys come from the package (sodium-universal's CSPRNG), never from the handshaker's
 * injectable `random`, so a deterministic test source can never weaken real sessions' forward secrecy.
 */
import { createRequire } from 'node:module';

export const PROLOGUE = new TextEncoder().encode('appnet link v1');
export const NOISE_PROTOCOL = 'Noise_IK_25519_ChaChaPoly_BLAKE2b';

export interface KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export interface SessionKeys {
  sendKey: Uint8Array;
  recvKey: Uint8Array;
}

interface NoiseState {
  initialise(prologue: Uint8Array, remoteStatic?: Uint8Array): void;
  send(payload?: Uint8Array): Buffer;
  recv(msg: Uint8Array): Buffer;
  complete: boolean;
  tx: Buffer | null;
  rx: Buffer | null;
  rs: Buffer | null;
  protocol: Buffer;
  // Internals copied by `cloneState`.
  digest: Buffer;
  chainingKey: Buffer;
  key: Buffer | null;
  handshake: unknown[];
  e: { publicKey: Buffer; secretKey: Buffer } | null;
}

type NoiseCtor = new (pattern: 'IK', initiator: boolean, staticKeyPair: { publicKey: Buffer; secretKey: Buffer }) => NoiseState;

const require = createRequire(import.meta.url);
const Noise = require('noise-handshake') as NoiseCtor;

function toKeyPair(k: KeyPair): { publicKey: Buffer; secretKey: Buffer } {
  return { publicKey: Buffer.from(k.publicKey), secretKey: Buffer.from(k.secretKey) };
}

function keysOf(n: NoiseState): SessionKeys {
  // tx/rx are 32-byte views into a 64-byte HKDF output buffer: copy to stand alone.
  return { sendKey: Uint8Array.from(n.tx!.subarray(0, 32)), recvKey: Uint8Array.from(n.rx!.subarray(0, 32)) };
}

/** Initiator side: message 1 is written at construction; `readResponse` may be retried after a failure. */
export class IkInitiator {
  readonly message1: Uint8Array;
  private readonly state: NoiseState;

  constructor(staticKey: KeyPair, remoteStatic: Uint8Array, payload: Uint8Array) {
    const n = new Noise('IK', true, toKeyPair(staticKey));
    n.initialise(Buffer.from(PROLOGUE), Buffer.from(remoteStatic));
    this.message1 = Uint8Array.from(n.send(Buffer.from(payload)));
    this.state = n;
  }

  /**
   * Processes Noise message 2 on a copy of the state, so a forged or corrupted response (anyone who saw
   * our sender index can send one) leaves the pending handshake intact for the genuine one.
   * Returns null when the message does not authenticate.
   */
  readResponse(message2: Uint8Array): SessionKeys | null {
    const n = cloneState(this.state);
    try {
      const payload = n.recv(Buffer.from(message2));
      if (payload.length !== 0 || !n.complete) return null;
    } catch {
      return null;
    }
    return keysOf(n);
  }
}

export interface IkResponse {
  /** The initiator's static public key, authenticated. */
  remoteStatic: Uint8Array;
  /** The decrypted payload of message 1. */
  payload: Uint8Array;
  /** Writes Noise message 2 and derives the session keys; call at most once. */
  respond(): { message2: Uint8Array; keys: SessionKeys };
}

/** Responder side: reads message 1; null when it does not decrypt (wrong key, corrupted, junk). */
export function readInitiation(staticKey: KeyPair, message1: Uint8Array): IkResponse | null {
  const n = new Noise('IK', false, toKeyPair(staticKey));
  n.initialise(Buffer.from(PROLOGUE));
  let payload: Buffer;
  try {
    payload = n.recv(Buffer.from(message1));
  } catch {
    return null;
  }
  return {
    remoteStatic: Uint8Array.from(n.rs!),
    payload: Uint8Array.from(payload),
    respond() {
      const message2 = Uint8Array.from(n.send(Buffer.alloc(0)));
      return { message2, keys: keysOf(n) };
    },
  };
}

function cloneState(n: NoiseState): NoiseState {
  const c = Object.create(Object.getPrototypeOf(n) as object) as NoiseState;
  Object.assign(c, n);
  c.digest = Buffer.from(n.digest);
  c.chainingKey = Buffer.from(n.chainingKey);
  c.key = n.key === null ? null : Buffer.from(n.key);
  c.handshake = n.handshake.slice();
  c.e = n.e === null ? null : { publicKey: Buffer.from(n.e.publicKey), secretKey: Buffer.from(n.e.secretKey) };
  c.rs = n.rs === null ? null : Buffer.from(n.rs);
  return c;
}
