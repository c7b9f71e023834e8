/**
 * When to handshake, keep alive or drop a session with one peer: the persistent-link policy. Hosts keep
 * a session with every authorised peer at all times (WireGuard handshakes on demand instead), so "no
 * session" always means "initiate", with back-off while the peer does not answer.
 *
 * Sans I/O: the integrator calls `tick` about once a second with the engine's per-peer report and
 * carries out the returned actions, then reports back with `onInitiated` (the initiation left),
 * `onSession` (a handshake completed) and `onFailed` (an attempt failed early, e.g. the send failed).
 *
 * | rule                         | default            | who                                  |
 * |------------------------------|--------------------|--------------------------------------|
 * | retry an unanswered attempt  | 1 s doubling to 16 s, ±10% jitter | whoever is initiating   |
 * | rekey by age                 | 120 s              | the side that initiated the session  |
 * | rekey by age, as responder   | 120 s + 30 s (a quarter more) | the other side (the initiator is quiet) |
 * | rekey by messages sent       | 2^60               | the side that initiated the session  |
 * | expire (stop using) session  | 180 s              | both                                 |
 * | keepalive                    | after completing as initiator; 10 s after a receive with nothing sent | both |
 */

export const REKEY_AFTER_TIME = 120_000;
export const REKEY_AFTER_MESSAGES = 2n ** 60n;
export const REJECT_AFTER_TIME = 180_000;
/**
 * How much longer the responder waits before rekeying itself: a quarter of the rekey age, so that a
 * shortened rekey age (tests, `link.rekeyAfterSeconds`) shortens it too. After simultaneous initiations
 * both sides may end up sending on the session the other initiated; a fixed 30 s would then hold off
 * every rekey for 30 s whatever the configured age.
 */
export const RESPONDER_REKEY_DELAY = REKEY_AFTER_TIME / 4;
export const KEEPALIVE_TIMEOUT = 10_000;
export const RETRY_INITIAL = 1_000;
export const RETRY_MAX = 16_000;
/** Jitter is ±this fraction of each retry delay, so peers that failed together do not retry together. */
export const RETRY_JITTER = 0.1;

export interface TimerConfig {
  rekeyAfterTime: number;
  rekeyAfterMessages: bigint;
  rejectAfterTime: number;
  responderRekeyDelay: number;
  keepaliveTimeout: number;
  retryInitial: number;
  retryMax: number;
  retryJitter: number;
}

export const DEFAULT_TIMERS: Readonly<TimerConfig> = Object.freeze({
  rekeyAfterTime: REKEY_AFTER_TIME,
  rekeyAfterMessages: REKEY_AFTER_MESSAGES,
  rejectAfterTime: REJECT_AFTER_TIME,
  responderRekeyDelay: RESPONDER_REKEY_DELAY,
  keepaliveTimeout: KEEPALIVE_TIMEOUT,
  retryInitial: RETRY_INITIAL,
  retryMax: RETRY_MAX,
  retryJitter: RETRY_JITTER,
});

export type Action = { type: 'initiate' } | { type: 'keepalive' } | { type: 'expire' };

export interface PeerObservation {
  hasSession: boolean;
  sessionCreatedMs?: number;
  sessionInitiator?: boolean;
  /** Last data (or keepalive) sent/received on this peer's link, ms; 0 or less = never. */
  lastTxMs: number;
  lastRxMs: number;
  /** Messages sent on the current session. */
  sendCounter: bigint;
}

export interface PeerTimersOptions extends Partial<TimerConfig> {
  /** Uniform in [0, 1), for the retry jitter; defaults to Math.random (jitter needs no secrecy). */
  random?: () => number;
}

export class PeerTimers {
  readonly config: Readonly<TimerConfig>;
  private readonly random: () => number;
  /** Back-off step of the next attempt: 0 for the first since the last session. */
  private step = 0;
  /** When the pending attempt is given up and retried; null when nothing is pending. */
  private retryAtMs: number | null = null;
  private lastDelayMs = 0;
  private keepaliveDue = false;
  private lastKeepaliveMs = -Infinity;
  private timeoutCount = 0;

  constructor(opts: PeerTimersOptions = {}) {
    const { random, ...overrides } = opts;
    const config = { ...DEFAULT_TIMERS, ...overrides };
    if (overrides.responderRekeyDelay === undefined) config.responderRekeyDelay = config.rekeyAfterTime / 4;
    this.config = Object.freeze(config);
    this.random = random ?? Math.random;
  }

  tick(now: number, obs: PeerObservation): Action[] {
    const actions: Action[] = [];
    const c = this.config;
    let hasSession = obs.hasSession && obs.sessionCreatedMs !== undefined;
    const age = hasSession ? now - obs.sessionCreatedMs! : 0;
    if (hasSession && age >= c.rejectAfterTime) {
      actions.push({ type: 'expire' });
      hasSession = false;
    }

    let wantSession: boolean;
    if (!hasSession) {
      wantSession = true;
    } else if (obs.sessionInitiator) {
      wantSession = age >= c.rekeyAfterTime || obs.sendCounter >= c.rekeyAfterMessages;
    } else {
      wantSession = age >= c.rekeyAfterTime + c.responderRekeyDelay;
    }
    if (wantSession) {
      if (this.retryAtMs === null) {
        actions.push({ type: 'initiate' });
      } else if (now >= this.retryAtMs) {
        this.timeoutCount++;
        this.retryAtMs = null;
        actions.push({ type: 'initiate' });
      }
    }

    if (hasSession) {
      const lastTx = Math.max(obs.lastTxMs, this.lastKeepaliveMs);
      const quietAfterRx = obs.lastRxMs > 0 && obs.lastRxMs > lastTx && now - obs.lastRxMs >= c.keepaliveTimeout;
      if (this.keepaliveDue || quietAfterRx) {
        actions.push({ type: 'keepalive' });
        this.lastKeepaliveMs = now;
        this.keepaliveDue = false;
      }
    }
    return actions;
  }

  /** The initiation was sent at `now`: wait one back-off step for its answer. */
  onInitiated(now: number): void {
    this.lastDelayMs = this.delay(this.step);
    this.retryAtMs = now + this.lastDelayMs;
    this.step++;
  }

  /** A handshake with this peer completed (either direction): back-off resets. */
  onSession(now: number, initiator: boolean): void {
    void now;
    this.step = 0;
    this.retryAtMs = null;
    // The responder confirms a session only when data arrives on it: give it some at once.
    if (initiator) this.keepaliveDue = true;
  }

  /** The pending attempt failed before its deadline (send error, rejected answer): retry one back-off step after `now`. */
  onFailed(now: number): void {
    if (this.retryAtMs === null) return;
    this.retryAtMs = now + this.lastDelayMs;
  }

  /** Attempts given up on because no answer came in time. */
  get timeouts(): number { return this.timeoutCount; }

  /** When the pending attempt will be retried, or null. */
  get retryAt(): number | null { return this.retryAtMs; }

  private delay(step: number): number {
    const c = this.config;
    const base = Math.min(c.retryInitial * 2 ** Math.min(step, 30), c.retryMax);
    return base * (1 + c.retryJitter * (2 * this.random() - 1));
  }
}
