/**
 * The link handshake state machine, sans I/O: bytes and a clock in, bytes to send and sessions out.
 *
 * Initiator: `initiate(peer, key)` → send the type 1 → `receive(type 2)` gives `{ kind: 'session' }`
 * (or `receive(type 3)` stores a cookie for the next attempt, which the peer timers schedule).
 * Responder: `receive(type 1)` gives `{ kind: 'reply' }`: send its type 2 and install the session.
 *
 * What the responder checks on an initiation, cheapest first, so junk costs as little as possible:
 *  1. length, type, reserved bytes            → malformed
 *  2. mac1 (keyed by our static public)       → bad_mac1
 *  3. mac2 if non-zero (cookie for the source) → bad_mac2
 *  4. under load: zero mac2                   → cookie reply (counted as cookie_required and cookie sent)
 *  5. under load: per-source token bucket     → rate_limited
 *  6. Noise IK message 1 (two DH)             → decrypt
 *  7. initiator's static key authorised       → unauthorised (nothing is allocated, nothing is sent)
 *  8. timestamp newer than the last accepted  → stale_timestamp (replayed initiations)
 * A response must pass 1, 2, have a zero mac2 (we never send cookies for responses: an off-path
 * flooder cannot guess a pending index, so responses cannot make us do DH work), name a pending index
 * (unknown_index) and decrypt. `receive` never throws on wire input.
 */
import { randomFillSync } from 'node:crypto';
import { WireError } from '../wire/errors.ts';
import {
  INITIATION, RESPONSE, MSG_INITIATION, MSG_RESPONSE, MSG_COOKIE_REPLY, COOKIE_NONCE_LEN,
  parseInitiation, parseResponse, parseCookieReply, emitInitiation, emitResponse, emitCookieReply,
} from './messages.ts';
import type { InitiationRepr, ResponseRepr, CookieReplyRepr } from './messages.ts';
import {
  COOKIE_LIFETIME_MS, CookieJar, ZERO_MAC, cookieKey, isZero, mac, mac1Key, macEqual, openCookie, sealCookie,
  sourceKey,
} from './cookies.ts';
import { LoadMeter, SourceRateLimiter } from './rate-limit.ts';
import type { TokenBucketOptions } from './rate-limit.ts';
import { IkInitiator, readInitiation } from './noise-ik.ts';
import type { KeyPair } from './noise-ik.ts';
import { TAI64N_LEN, Tai64nClock, compareTai64n } from './tai64n.ts';

export const DROP_REASONS = [
  'malformed', 'bad_mac1', 'cookie_required', 'bad_mac2', 'unauthorised', 'decrypt', 'stale_timestamp',
  'unknown_index', 'rate_limited',
] as const;
export type DropReason = typeof DROP_REASONS[number];
export type FailureReason = DropReason | 'timeout';

/** More than this many handshake messages in the last second means "under load". */
export const DEFAULT_LOAD_THRESHOLD = 20;

export interface Session {
  peer: string;
  localIndex: number;
  remoteIndex: number;
  sendKey: Uint8Array;
  recvKey: Uint8Array;
  /** Responder sessions are confirmed by the engine when their first data message arrives. */
  initiator: boolean;
  createdMs: number;
}

export type Result =
  | { kind: 'reply'; message: Uint8Array; session: Session }
  | { kind: 'session'; session: Session }
  | { kind: 'cookie'; message: Uint8Array }
  | { kind: 'cookie-stored' }
  | { kind: 'dropped'; reason: DropReason };

export interface HandshakeCounters {
  sent: { initiation: number; response: number; cookie: number };
  /** Handshakes completed, as initiator (`session`) or responder (`reply`). */
  completed: number;
  failed: Record<FailureReason, number>;
}

export interface HandshakerOptions {
  staticKey: KeyPair;
  /** Peer id for an authorised static public key, null for anyone else. */
  authorise: (publicKey: Uint8Array) => string | null;
  /** Wall-clock milliseconds since the Unix epoch (timestamps must keep increasing across restarts). */
  now: () => number;
  /** Cryptographically secure bytes in production (the default is Node's CSPRNG); tests may inject. */
  random?: (n: number) => Uint8Array;
  loadThreshold?: number;
  rateLimit?: Partial<TokenBucketOptions>;
}

interface Pending {
  kind: 'pending';
  peer: string;
  peerPublicKey: Uint8Array;
  noise: IkInitiator;
  /** The mac1 we sent: the AD of any cookie reply to this attempt. */
  mac1: Uint8Array;
  usedCookie: boolean;
  gotCookie: boolean;
}

interface Live { kind: 'live'; peer: string }

export class Handshaker {
  private readonly indexes = new Map<number, Pending | Live>();
  private readonly pendingByPeer = new Map<string, number>();
  private readonly cookies = new Map<string, { cookie: Uint8Array; receivedMs: number }>();
  private readonly lastTimestamp = new Map<string, Uint8Array>();
  private readonly clock = new Tai64nClock();
  private readonly ownMac1Key: Uint8Array;
  private readonly ownCookieKey: Uint8Array;
  private readonly jar: CookieJar;
  private readonly load: LoadMeter;
  private readonly limiter: SourceRateLimiter;
  private readonly random: (n: number) => Uint8Array;
  private readonly stats: HandshakeCounters = {
    sent: { initiation: 0, response: 0, cookie: 0 },
    completed: 0,
    failed: Object.fromEntries([...DROP_REASONS, 'timeout'].map((r) => [r, 0])) as Record<FailureReason, number>,
  };

  private constructor(private readonly opts: HandshakerOptions) {
    const { publicKey, secretKey } = opts.staticKey;
    if (publicKey.length !== 32 || secretKey.length !== 32) {
      throw new RangeError(`staticKey needs 32-byte publicKey and secretKey, got ${publicKey.length} and ${secretKey.length}`);
    }
    // Node's CSPRNG, not libsodium-wrappers' randombytes_buf: same quality, ~50x cheaper per call,
    // which matters because every cookie reply under load draws a nonce.
    this.random = opts.random ?? ((n) => randomBytes(n));
    this.ownMac1Key = mac1Key(publicKey);
    this.ownCookieKey = cookieKey(publicKey);
    this.jar = new CookieJar(this.random, opts.now());
    this.load = new LoadMeter(opts.loadThreshold ?? DEFAULT_LOAD_THRESHOLD);
    this.limiter = new SourceRateLimiter(opts.rateLimit);
  }

  /** Async so that a crypto back end that loads asynchronously can be swapped in without changing callers. */
  static async create(opts: HandshakerOptions): Promise<Handshaker> {
    return new Handshaker(opts);
  }

  /**
   * A new type 1 initiation to `peer`. A still-pending initiation to the same peer is superseded (its
   * index is freed; it counts as a timeout unless it was answered by a cookie). A cookie that went
   * unanswered is dropped too: it may be stale (the responder restarted, our address changed).
   */
  initiate(peer: string, peerPublicKey: Uint8Array): Uint8Array {
    if (peerPublicKey.length !== 32) throw new RangeError(`peerPublicKey for ${peer} is ${peerPublicKey.length} bytes, expected 32`);
    const now = this.opts.now();
    const old = this.pendingByPeer.get(peer);
    if (old !== undefined) {
      const p = this.indexes.get(old) as Pending;
      this.indexes.delete(old);
      if (!p.gotCookie) {
        this.stats.failed.timeout++;
        if (p.usedCookie) this.cookies.delete(peer);
      }
    }
    const noise = new IkInitiator(this.opts.staticKey, peerPublicKey, this.clock.next(now));
    const localIndex = this.allocIndex();
    const msg = emitInitiation({ senderIndex: localIndex, noise: noise.message1, mac1: ZERO_MAC, mac2: ZERO_MAC });
    const mac1 = mac(mac1Key(peerPublicKey), msg.subarray(0, INITIATION.mac1));
    msg.set(mac1, INITIATION.mac1);
    const cookie = this.cookies.get(peer);
    const usedCookie = cookie !== undefined && now - cookie.receivedMs < COOKIE_LIFETIME_MS;
    if (usedCookie) msg.set(mac(cookie.cookie, msg.subarray(0, INITIATION.mac2)), INITIATION.mac2);
    else this.cookies.delete(peer);
    this.indexes.set(localIndex, { kind: 'pending', peer, peerPublicKey, noise, mac1, usedCookie, gotCookie: false });
    this.pendingByPeer.set(peer, localIndex);
    this.stats.sent.initiation++;
    return msg;
  }

  receive(msg: Uint8Array, from: { address: string; port: number }): Result {
    const now = this.opts.now();
    const underLoad = this.load.record(now);
    switch (msg.length > 0 ? msg[0] : -1) {
      case MSG_INITIATION: return this.onInitiation(msg, from, underLoad, now);
      case MSG_RESPONSE: return this.onResponse(msg, now);
      case MSG_COOKIE_REPLY: return this.onCookieReply(msg, now);
      default: return this.drop('malformed');
    }
  }

  /** Frees a session's (or a pending handshake's) local index; the integrator calls it on expiry. */
  forget(localIndex: number): void {
    const e = this.indexes.get(localIndex);
    if (e === undefined) return;
    this.indexes.delete(localIndex);
    if (e.kind === 'pending' && this.pendingByPeer.get(e.peer) === localIndex) this.pendingByPeer.delete(e.peer);
  }

  counters(): HandshakeCounters {
    return { sent: { ...this.stats.sent }, completed: this.stats.completed, failed: { ...this.stats.failed } };
  }

  /** Local indexes in use (pending and live), for tests and metrics. */
  get indexCount(): number { return this.indexes.size; }

  private onInitiation(msg: Uint8Array, from: { address: string; port: number }, underLoad: boolean, now: number): Result {
    const m = parseOr<InitiationRepr>(() => parseInitiation(msg));
    if (m === null) return this.drop('malformed');
    if (!macEqual(mac(this.ownMac1Key, msg.subarray(0, INITIATION.mac1)), m.mac1)) return this.drop('bad_mac1');
    const source = sourceKey(from);
    // A non-zero mac2 is always checked, so a corrupted or stale cookie is reported rather than ignored;
    // the initiator drops a cookie whose attempt went unanswered and retries without it.
    const hasMac2 = !isZero(m.mac2);
    if (hasMac2 && !this.jar.checkMac2(source, msg.subarray(0, INITIATION.mac2), m.mac2, now)) return this.drop('bad_mac2');
    if (underLoad) {
      if (!hasMac2) return this.cookieReply(m.senderIndex, m.mac1, source, now);
      if (!this.limiter.allow(from.address, now)) return this.drop('rate_limited');
    }
    const ik = readInitiation(this.opts.staticKey, m.noise);
    if (ik === null) return this.drop('decrypt');
    const peer = this.opts.authorise(ik.remoteStatic);
    if (peer === null) return this.drop('unauthorised');
    if (ik.payload.length !== TAI64N_LEN) return this.drop('malformed');
    const last = this.lastTimestamp.get(peer);
    if (last !== undefined && compareTai64n(ik.payload, last) <= 0) return this.drop('stale_timestamp');
    this.lastTimestamp.set(peer, ik.payload);

    const { message2, keys } = ik.respond();
    const localIndex = this.allocIndex();
    this.indexes.set(localIndex, { kind: 'live', peer });
    const reply = emitResponse({
      senderIndex: localIndex, receiverIndex: m.senderIndex, noise: message2, mac1: ZERO_MAC, mac2: ZERO_MAC,
    } satisfies ResponseRepr);
    reply.set(mac(mac1Key(ik.remoteStatic), reply.subarray(0, RESPONSE.mac1)), RESPONSE.mac1);
    this.stats.sent.response++;
    this.stats.completed++;
    return {
      kind: 'reply',
      message: reply,
      session: { peer, localIndex, remoteIndex: m.senderIndex, ...keys, initiator: false, createdMs: now },
    };
  }

  private onResponse(msg: Uint8Array, now: number): Result {
    const m = parseOr<ResponseRepr>(() => parseResponse(msg));
    if (m === null) return this.drop('malformed');
    if (!macEqual(mac(this.ownMac1Key, msg.subarray(0, RESPONSE.mac1)), m.mac1)) return this.drop('bad_mac1');
    if (!isZero(m.mac2)) return this.drop('bad_mac2');
    const p = this.indexes.get(m.receiverIndex);
    if (p === undefined || p.kind !== 'pending') return this.drop('unknown_index');
    const keys = p.noise.readResponse(m.noise);
    if (keys === null) return this.drop('decrypt');
    this.indexes.set(m.receiverIndex, { kind: 'live', peer: p.peer });
    this.pendingByPeer.delete(p.peer);
    this.stats.completed++;
    return {
      kind: 'session',
      session: { peer: p.peer, localIndex: m.receiverIndex, remoteIndex: m.senderIndex, ...keys, initiator: true, createdMs: now },
    };
  }

  private onCookieReply(msg: Uint8Array, now: number): Result {
    const m = parseOr<CookieReplyRepr>(() => parseCookieReply(msg));
    if (m === null) return this.drop('malformed');
    const p = this.indexes.get(m.receiverIndex);
    if (p === undefined || p.kind !== 'pending') return this.drop('unknown_index');
    const cookie = openCookie(cookieKey(p.peerPublicKey), m.encryptedCookie, p.mac1, m.nonce);
    if (cookie === null) return this.drop('decrypt');
    this.cookies.set(p.peer, { cookie, receivedMs: now });
    p.gotCookie = true;
    return { kind: 'cookie-stored' };
  }

  private cookieReply(receiverIndex: number, mac1: Uint8Array, source: string, now: number): Result {
    const cookie = this.jar.cookieFor(source, now);
    const sealed = sealCookie(this.ownCookieKey, cookie, mac1, this.random(COOKIE_NONCE_LEN));
    this.stats.sent.cookie++;
    this.stats.failed.cookie_required++;
    return { kind: 'cookie', message: emitCookieReply({ receiverIndex, ...sealed }) };
  }

  private drop(reason: DropReason): Result {
    this.stats.failed[reason]++;
    return { kind: 'dropped', reason };
  }

  /** A random 32-bit index not in use by a pending or live handshake (0 is never issued). */
  private allocIndex(): number {
    for (let i = 0; i < 64; i++) {
      const b = this.random(4);
      const idx = (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
      if (idx !== 0 && !this.indexes.has(idx)) return idx;
    }
    throw new Error('link handshake: no free session index after 64 random draws; is the random source broken?');
  }
}

function randomBytes(n: number): Uint8Array {
  return randomFillSync(new Uint8Array(n));
}

function parseOr<T>(parse: () => T): T | null {
  try {
    return parse();
  } catch (e) {
    if (e instanceof WireError) return null;
    throw e;
  }
}
