/** The link handshake: Noise IK between hosts' static keys, its messages, timers and key file. */
export { Handshaker, DROP_REASONS, DEFAULT_LOAD_THRESHOLD } from './handshaker.ts';
export type {
  DropReason, FailureReason, HandshakeCounters, HandshakerOptions, Result, Session,
} from './handshaker.ts';
export * from './peer-timers.ts';
export * from './messages.ts';
export { PROLOGUE, NOISE_PROTOCOL } from './noise-ik.ts';
export type { KeyPair, SessionKeys } from './noise-ik.ts';
export { COOKIE_LIFETIME_MS, COOKIE_SECRET_ROTATE_MS } from './cookies.ts';
export { LoadMeter, SourceRateLimiter, DEFAULT_RATE_LIMIT } from './rate-limit.ts';
export type { TokenBucketOptions } from './rate-limit.ts';
export { generateKeyPair, loadOrCreateKeyPair, publicKeyOf, publicKeyFromBase64, toBase64 } from './keys.ts';
