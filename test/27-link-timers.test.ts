import test from 'ava';
import sodium from 'libsodium-wrappers';
import {
  PeerTimers, Handshaker, generateKeyPair, toBase64,
  REKEY_AFTER_TIME, REJECT_AFTER_TIME, KEEPALIVE_TIMEOUT, REKEY_AFTER_MESSAGES, RETRY_INITIAL, RETRY_MAX,
} from '../dataplane/link/index.ts';
import type { Action, PeerObservation, Session } from '../dataplane/link/index.ts';

const T0 = 1_700_000_000_000;
const NO_SESSION: PeerObservation = { hasSession: false, lastTxMs: 0, lastRxMs: 0, sendCounter: 0n };

function types(actions: Action[]): string[] {
  return actions.map((a) => a.type);
}

function withSession(createdMs: number, initiator: boolean, extra: Partial<PeerObservation> = {}): PeerObservation {
  return { hasSession: true, sessionCreatedMs: createdMs, sessionInitiator: initiator, lastTxMs: createdMs, lastRxMs: createdMs, sendCounter: 0n, ...extra };
}

/** Ticks once a second from `from` and returns the times at which `initiate` was asked for. */
function initiations(timers: PeerTimers, from: number, seconds: number, obs: PeerObservation): number[] {
  const at: number[] = [];
  for (let now = from; now <= from + seconds * 1000; now += 100) {
    if (types(timers.tick(now, obs)).includes('initiate')) {
      at.push(now - from);
      timers.onInitiated(now);
    }
  }
  return at;
}

test('constants are the documented defaults', (t) => {
  t.is(REKEY_AFTER_TIME, 120_000);
  t.is(REJECT_AFTER_TIME, 180_000);
  t.is(KEEPALIVE_TIMEOUT, 10_000);
  t.is(REKEY_AFTER_MESSAGES, 2n ** 60n);
  t.is(RETRY_INITIAL, 1000);
  t.is(RETRY_MAX, 16_000);
});

test('no session: initiate at once, then retry after 1, 2, 4, 8, 16, 16 s, each unanswered attempt a timeout', (t) => {
  const timers = new PeerTimers({ random: () => 0.5 }); // 0.5 = no jitter
  t.deepEqual(initiations(timers, T0, 64, NO_SESSION), [0, 1000, 3000, 7000, 15_000, 31_000, 47_000, 63_000]);
  t.is(timers.timeouts, 7);
  t.deepEqual(types(timers.tick(T0 + 63_500, NO_SESSION)), [], 'no initiation while one is pending');
});

test('retry back-off stays within ±10% of 1 s doubling to 16 s', (t) => {
  for (const r of [0, 0.999999]) {
    const timers = new PeerTimers({ random: () => r });
    let now = T0;
    timers.tick(now, NO_SESSION);
    for (let step = 0; step < 8; step++) {
      timers.onInitiated(now);
      const base = Math.min(1000 * 2 ** step, 16_000);
      const delay = timers.retryAt! - now;
      t.true(delay >= base * 0.9 - 1e-6 && delay <= base * 1.1, `step ${step}: ${delay} for base ${base}`);
      t.deepEqual(types(timers.tick(timers.retryAt! - 1, NO_SESSION)), []);
      now = timers.retryAt!;
      t.deepEqual(types(timers.tick(now, NO_SESSION)), ['initiate']);
    }
  }
  const low = new PeerTimers({ random: () => 0 });
  low.onInitiated(T0);
  t.is(low.retryAt, T0 + 900);
});

test('a completed handshake resets the back-off', (t) => {
  const timers = new PeerTimers({ random: () => 0.5 });
  initiations(timers, T0, 10, NO_SESSION);
  timers.onSession(T0 + 10_000, false);
  t.is(timers.retryAt, null);
  t.deepEqual(types(timers.tick(T0 + 200_000, NO_SESSION)), ['initiate']);
  timers.onInitiated(T0 + 200_000);
  t.is(timers.retryAt, T0 + 201_000);
});

test('onFailed retries one back-off step after the failure, not after the send', (t) => {
  const timers = new PeerTimers({ random: () => 0.5 });
  timers.tick(T0, NO_SESSION);
  timers.onInitiated(T0);
  timers.onFailed(T0 + 300);
  t.is(timers.retryAt, T0 + 1300);
});

test('the initiator rekeys at 120 s, not before', (t) => {
  const timers = new PeerTimers();
  timers.onSession(T0, true);
  const obs = withSession(T0, true, { lastTxMs: Number.MAX_SAFE_INTEGER });
  t.deepEqual(types(timers.tick(T0, obs)), ['keepalive']);
  t.deepEqual(types(timers.tick(T0 + 119_999, obs)), []);
  t.deepEqual(types(timers.tick(T0 + 120_000, obs)), ['initiate']);
});

test('the responder rekeys at 150 s (the initiator went quiet), not at 120 s', (t) => {
  const timers = new PeerTimers();
  timers.onSession(T0, false);
  const obs = withSession(T0, false, { lastTxMs: Number.MAX_SAFE_INTEGER });
  t.deepEqual(types(timers.tick(T0, obs)), [], 'the responder sends no keepalive on completion');
  t.deepEqual(types(timers.tick(T0 + 120_000, obs)), []);
  t.deepEqual(types(timers.tick(T0 + 149_999, obs)), []);
  t.deepEqual(types(timers.tick(T0 + 150_000, obs)), ['initiate']);
});

test('a shortened rekey age shortens the responder\'s wait with it (both sides may hold responder sessions)', (t) => {
  // After simultaneous initiations each side can end up sending on the session the other initiated;
  // with a 1 s rekey age the responder must not then wait the default 30 s.
  const timers = new PeerTimers({ rekeyAfterTime: 1000 });
  t.is(timers.config.responderRekeyDelay, 250);
  timers.onSession(T0, false);
  const obs = withSession(T0, false, { lastTxMs: Number.MAX_SAFE_INTEGER });
  t.deepEqual(types(timers.tick(T0 + 1249, obs)), []);
  t.deepEqual(types(timers.tick(T0 + 1250, obs)), ['initiate']);
  t.is(new PeerTimers({ rekeyAfterTime: 1000, responderRekeyDelay: 5000 }).config.responderRekeyDelay, 5000);
});

test('the initiator rekeys after 2^60 messages whatever the age', (t) => {
  const timers = new PeerTimers();
  const obs = withSession(T0, true, { lastTxMs: Number.MAX_SAFE_INTEGER });
  t.deepEqual(types(timers.tick(T0 + 1000, { ...obs, sendCounter: 2n ** 60n - 1n })), []);
  t.deepEqual(types(timers.tick(T0 + 1000, { ...obs, sendCounter: 2n ** 60n })), ['initiate']);
  const responder = new PeerTimers();
  t.deepEqual(types(responder.tick(T0 + 1000, { ...obs, sessionInitiator: false, sendCounter: 2n ** 60n })), []);
});

test('a rekey in flight is retried on the back-off schedule, not every tick', (t) => {
  const timers = new PeerTimers({ random: () => 0.5 });
  const obs = withSession(T0, true, { lastTxMs: Number.MAX_SAFE_INTEGER });
  t.deepEqual(initiations(timers, T0 + 120_000, 5, obs), [0, 1000, 3000]);
});

test('expire at 180 s and initiate in the same tick', (t) => {
  const timers = new PeerTimers();
  timers.onSession(T0, false);
  const obs = withSession(T0, false, { lastTxMs: Number.MAX_SAFE_INTEGER });
  timers.tick(T0 + 150_000, obs);
  timers.onInitiated(T0 + 150_000);
  // The rekey never completes; the retries go on (covered above) and the session runs out.
  t.false(types(timers.tick(T0 + 179_999, obs)).includes('expire'));
  const at180 = types(new PeerTimers().tick(T0 + 180_000, obs));
  t.deepEqual(at180, ['expire', 'initiate']);
});

test('forced rekey: with a 1 s override two real handshakers make a new session every second', async (t) => {
  await sodium.ready;
  const clock = { t: T0 };
  const peers = new Map<string, string>();
  const ka = generateKeyPair();
  const kb = generateKeyPair();
  peers.set(toBase64(ka.publicKey), 'a');
  peers.set(toBase64(kb.publicKey), 'b');
  const mk = (k: typeof ka) => Handshaker.create({ staticKey: k, now: () => clock.t, authorise: (pk) => peers.get(toBase64(pk)) ?? null });
  const [ha, hb] = await Promise.all([mk(ka), mk(kb)]);
  const ta = new PeerTimers({ rekeyAfterTime: 1000, rejectAfterTime: 3000, random: () => 0.5 });
  const tb = new PeerTimers({ rekeyAfterTime: 1000, rejectAfterTime: 3000, random: () => 0.5 });
  let sa: Session | null = null;
  let sb: Session | null = null;
  const created: number[] = [];
  const obs = (s: Session | null): PeerObservation => s === null ? NO_SESSION
    : { hasSession: true, sessionCreatedMs: s.createdMs, sessionInitiator: s.initiator, lastTxMs: clock.t, lastRxMs: clock.t, sendCounter: 0n };
  // b's timers see b's own sessions; only a initiates here because a has the shorter reaction time.
  for (; clock.t <= T0 + 10_000; clock.t += 500) {
    for (const act of ta.tick(clock.t, obs(sa))) {
      if (act.type === 'expire') sa = null;
      if (act.type !== 'initiate') continue;
      const init = ha.initiate('b', kb.publicKey);
      ta.onInitiated(clock.t);
      const r = hb.receive(init, { address: '198.18.0.1', port: 51830 });
      if (r.kind !== 'reply') return t.fail(JSON.stringify(r));
      sb = r.session;
      tb.onSession(clock.t, false);
      const s = ha.receive(r.message, { address: '198.18.0.2', port: 51830 });
      if (s.kind !== 'session') return t.fail(JSON.stringify(s));
      if (sa !== null) ha.forget(sa.localIndex);
      sa = s.session;
      ta.onSession(clock.t, true);
      created.push(clock.t - T0);
    }
    t.false(types(tb.tick(clock.t, obs(sb))).includes('initiate'), 'the responder never needs to step in');
  }
  t.deepEqual(created, [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000]);
  t.deepEqual(sa!.sendKey, sb!.recvKey);
  t.is(ha.counters().completed, 11);
  t.is(ha.indexCount, 1);
});

test('keepalive right after completing as initiator, once', (t) => {
  const timers = new PeerTimers();
  timers.onSession(T0, true);
  const obs = withSession(T0, true, { lastTxMs: T0 - 5, lastRxMs: T0 - 10 });
  t.deepEqual(types(timers.tick(T0 + 1, obs)), ['keepalive']);
  t.deepEqual(types(timers.tick(T0 + 2, obs)), []);
});

test('keepalive when something was received and nothing sent for 10 s, and only once per quiet spell', (t) => {
  const timers = new PeerTimers();
  const rx = T0 + 5000;
  const obs = withSession(T0, false, { lastTxMs: T0, lastRxMs: rx });
  t.deepEqual(types(timers.tick(rx + 9999, obs)), []);
  t.deepEqual(types(timers.tick(rx + 10_000, obs)), ['keepalive']);
  // The engine has not reported the keepalive as sent yet: no second one.
  t.deepEqual(types(timers.tick(rx + 11_000, obs)), []);
  // We sent after the receive: nothing to acknowledge.
  t.deepEqual(types(new PeerTimers().tick(rx + 20_000, { ...obs, lastTxMs: rx + 1 })), []);
  // Nothing received at all: nothing to acknowledge either.
  t.deepEqual(types(new PeerTimers().tick(rx + 20_000, { ...obs, lastRxMs: 0, lastTxMs: 0 })), []);
  // No session: no keepalive.
  t.deepEqual(types(new PeerTimers().tick(rx + 20_000, { ...NO_SESSION, lastRxMs: rx })), ['initiate']);
});
