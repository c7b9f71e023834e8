import test from 'ava';
import type { ExecutionContext } from 'ava';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sodium from 'libsodium-wrappers';
import {
  Handshaker, DROP_REASONS, generateKeyPair, loadOrCreateKeyPair, publicKeyOf, publicKeyFromBase64, toBase64,
  INITIATION_LEN, RESPONSE_LEN, COOKIE_REPLY_LEN, LINK_UDP_PORT, NOISE_PROTOCOL,
  parseInitiation, parseResponse, parseCookieReply, emitCookieReply,
} from '../dataplane/link/index.ts';
import type { KeyPair, Result, Session } from '../dataplane/link/index.ts';
import { WireError } from '../dataplane/wire/errors.ts';
import { throwsWire } from './helpers/wire-assert.ts';
import { prng, randomBytes } from './helpers/random.ts';

const T0 = 1_700_000_000_000;
const FROM_A = { address: '198.18.0.1', port: LINK_UDP_PORT };
const FROM_B = { address: '198.18.0.2', port: LINK_UDP_PORT };

interface Host { hs: Handshaker; keys: KeyPair; clock: { t: number } }

/** Hosts on one fake clock; `peers` maps base64 public keys to peer ids (the store's registrations). */
async function host(name: string, peers: Map<string, string>, clock = { t: T0 }, loadThreshold?: number): Promise<Host> {
  const keys = generateKeyPair();
  peers.set(toBase64(keys.publicKey), name);
  const hs = await Handshaker.create({
    staticKey: keys, now: () => clock.t, loadThreshold,
    authorise: (pk) => peers.get(toBase64(pk)) ?? null,
  });
  return { hs, keys, clock };
}

async function pair(loadThreshold?: number) {
  const peers = new Map<string, string>();
  const clock = { t: T0 };
  const a = await host('a', peers, clock, loadThreshold);
  const b = await host('b', peers, clock, loadThreshold);
  return { a, b, clock, peers };
}

function session(t: ExecutionContext, r: Result, kind: 'reply' | 'session'): Session {
  if (r.kind !== kind) t.fail(`expected ${kind}, got ${JSON.stringify(r)}`);
  return (r as { session: Session }).session;
}

function dropped(r: Result): string {
  return r.kind === 'dropped' ? r.reason : `not dropped: ${r.kind}`;
}

/** Spec formula written independently of the implementation: keyed BLAKE2b-128 with BLAKE2b-256(label || pk). */
function specMac1(receiverPublic: Uint8Array, covered: Uint8Array): Uint8Array {
  const label = new TextEncoder().encode('mac1----');
  const key = sodium.crypto_generichash(32, new Uint8Array([...label, ...receiverPublic]), null);
  return sodium.crypto_generichash(16, covered, key);
}

function handshake(t: ExecutionContext, from: Host, to: Host, fromName: string, toName: string) {
  const init = from.hs.initiate(toName, to.keys.publicKey);
  const reply = to.hs.receive(init, fromName === 'a' ? FROM_A : FROM_B);
  const responder = session(t, reply, 'reply');
  const initiator = session(t, from.hs.receive((reply as { message: Uint8Array }).message, toName === 'a' ? FROM_A : FROM_B), 'session');
  return { initiator, responder };
}

test.before(async () => { await sodium.ready; });

test('two hosts complete IK in both directions; keys cross-match and open each other\'s AEAD', async (t) => {
  const { a, b } = await pair();
  for (const [x, y, xn, yn] of [[a, b, 'a', 'b'], [b, a, 'b', 'a']] as const) {
    const { initiator: i, responder: r } = handshake(t, x, y, xn, yn);
    t.is(i.peer, yn);
    t.is(r.peer, xn);
    t.true(i.initiator);
    t.false(r.initiator);
    t.is(i.createdMs, T0);
    t.is(i.localIndex, r.remoteIndex);
    t.is(i.remoteIndex, r.localIndex);
    t.is(i.sendKey.length, 32);
    t.deepEqual(i.sendKey, r.recvKey);
    t.deepEqual(i.recvKey, r.sendKey);
    t.notDeepEqual(i.sendKey, i.recvKey);
    const nonce = new Uint8Array(12);
    const header = Uint8Array.of(4, 0, 0, 0);
    const sealed = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(new TextEncoder().encode('vxlan frame'), header, null, nonce, i.sendKey);
    t.is(new TextDecoder().decode(sodium.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed, header, nonce, r.recvKey)), 'vxlan frame');
    const back = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(Uint8Array.of(1, 2, 3), null, null, nonce, r.sendKey);
    t.deepEqual(sodium.crypto_aead_chacha20poly1305_ietf_decrypt(null, back, null, nonce, i.recvKey), Uint8Array.of(1, 2, 3));
  }
  t.is(NOISE_PROTOCOL, 'Noise_IK_25519_ChaChaPoly_BLAKE2b');
  t.like(a.hs.counters(), { sent: { initiation: 1, response: 1, cookie: 0 }, completed: 2 });
  t.is(Object.values(a.hs.counters().failed).reduce((x, y) => x + y, 0), 0);
});

test('message lengths are 148, 92 and 64 with the header fields where the docs say', async (t) => {
  const { a, b } = await pair(0);
  const init = a.hs.initiate('b', b.keys.publicKey);
  t.is(init.length, INITIATION_LEN);
  t.is(INITIATION_LEN, 148);
  t.deepEqual([...init.subarray(0, 4)], [1, 0, 0, 0]);
  const pi = parseInitiation(init);
  t.deepEqual(pi.mac1, specMac1(b.keys.publicKey, init.subarray(0, 116)));
  t.deepEqual(pi.mac2, new Uint8Array(16));
  // loadThreshold 0: the very first message puts b under load, so it answers with a cookie.
  const cookie = b.hs.receive(init, FROM_A);
  if (cookie.kind !== 'cookie') return t.fail(JSON.stringify(cookie));
  t.is(cookie.message.length, COOKIE_REPLY_LEN);
  t.deepEqual([...cookie.message.subarray(0, 4)], [3, 0, 0, 0]);
  t.is(parseCookieReply(cookie.message).receiverIndex, pi.senderIndex);
  t.deepEqual(a.hs.receive(cookie.message, FROM_B), { kind: 'cookie-stored' });
  const retry = a.hs.initiate('b', b.keys.publicKey);
  t.notDeepEqual(parseInitiation(retry).mac2, new Uint8Array(16));
  const reply = b.hs.receive(retry, FROM_A);
  if (reply.kind !== 'reply') return t.fail(JSON.stringify(reply));
  t.is(reply.message.length, RESPONSE_LEN);
  t.deepEqual([...reply.message.subarray(0, 4)], [2, 0, 0, 0]);
  const pr = parseResponse(reply.message);
  t.is(pr.senderIndex, reply.session.localIndex);
  t.is(pr.receiverIndex, parseInitiation(retry).senderIndex);
  t.deepEqual(pr.mac1, specMac1(a.keys.publicKey, reply.message.subarray(0, 60)));
  t.deepEqual(pr.mac2, new Uint8Array(16));
});

test('codec errors name the message, field and byte offset', (t) => {
  const init = new Uint8Array(148);
  init[0] = 1;
  throwsWire(t, () => parseInitiation(init.subarray(0, 147)), 'link-initiation', 'length', 0);
  init[2] = 7;
  throwsWire(t, () => parseInitiation(init), 'link-initiation', 'reserved', 2);
  throwsWire(t, () => parseResponse(new Uint8Array(92)), 'link-response', 'type', 0);
  throwsWire(t, () => emitCookieReply({ receiverIndex: 1, nonce: new Uint8Array(23), encryptedCookie: new Uint8Array(32) }),
    'link-cookie-reply', 'nonce', 8);
  throwsWire(t, () => emitCookieReply({ receiverIndex: 2 ** 32, nonce: new Uint8Array(24), encryptedCookie: new Uint8Array(32) }),
    'link-cookie-reply', 'receiver_index', 4);
});

test('an unauthorised initiator gets dropped: unauthorised, no bytes back and nothing allocated', async (t) => {
  const { b } = await pair();
  const strangerPeers = new Map<string, string>();
  const stranger = await host('stranger', strangerPeers);
  const init = stranger.hs.initiate('b', b.keys.publicKey);
  const before = b.hs.indexCount;
  const r = b.hs.receive(init, FROM_A);
  t.deepEqual(r, { kind: 'dropped', reason: 'unauthorised' });
  t.false('message' in r);
  t.is(b.hs.indexCount, before);
  t.is(b.hs.counters().sent.response, 0);
  t.is(b.hs.counters().failed.unauthorised, 1);
});

test('a replayed initiation is stale_timestamp; a newer one from the same peer is accepted', async (t) => {
  const { a, b, clock } = await pair();
  const init = a.hs.initiate('b', b.keys.publicKey);
  session(t, b.hs.receive(init, FROM_A), 'reply');
  t.is(dropped(b.hs.receive(init, FROM_A)), 'stale_timestamp');
  t.is(dropped(b.hs.receive(init, { address: '198.18.0.99', port: 1 })), 'stale_timestamp');
  // Same millisecond: the initiator's clock still issues a strictly newer timestamp.
  session(t, b.hs.receive(a.hs.initiate('b', b.keys.publicKey), FROM_A), 'reply');
  clock.t += 1000;
  session(t, b.hs.receive(a.hs.initiate('b', b.keys.publicKey), FROM_A), 'reply');
  t.is(b.hs.counters().failed.stale_timestamp, 2);
});

test('every single-byte corruption of an initiation is dropped with a reason and never throws', async (t) => {
  const { a, b } = await pair(10_000); // hundreds of messages in one fake millisecond must not look like load
  const init = a.hs.initiate('b', b.keys.publicKey);
  const reasons = new Map<string, number>();
  for (let i = 0; i < init.length; i++) {
    for (const flip of [0x01, 0x80]) {
      const bad = Uint8Array.from(init);
      bad[i] ^= flip;
      let r: Result;
      try {
        r = b.hs.receive(bad, FROM_A);
      } catch (e) {
        return t.fail(`byte ${i} ^ ${flip} threw ${String(e)}`);
      }
      if (r.kind !== 'dropped') return t.fail(`byte ${i} ^ ${flip} was accepted: ${r.kind}`);
      reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
    }
  }
  t.deepEqual(Object.fromEntries(reasons), { malformed: 8, bad_mac1: 2 * 128, bad_mac2: 32 });
  // An attacker knows b's public key and can recompute mac1: then the Noise AEAD catches it.
  for (let i = 8; i < 116; i++) {
    const bad = Uint8Array.from(init);
    bad[i] ^= 0x01;
    bad.set(specMac1(b.keys.publicKey, bad.subarray(0, 116)), 116);
    t.is(dropped(b.hs.receive(bad, FROM_A)), 'decrypt', `noise byte ${i}`);
  }
  session(t, b.hs.receive(init, FROM_A), 'reply');
  t.is(b.hs.indexCount, 1);
});

test('every single-byte corruption of a response is dropped; the genuine response still completes', async (t) => {
  const { a, b } = await pair(10_000);
  const init = a.hs.initiate('b', b.keys.publicKey);
  const reply = b.hs.receive(init, FROM_A) as { kind: 'reply'; message: Uint8Array; session: Session };
  const resp = reply.message;
  const reasons = new Map<string, number>();
  for (let i = 0; i < resp.length; i++) {
    for (const flip of [0x01, 0x80]) {
      const bad = Uint8Array.from(resp);
      bad[i] ^= flip;
      const r = a.hs.receive(bad, FROM_B);
      if (r.kind !== 'dropped') return t.fail(`byte ${i} ^ ${flip} was accepted: ${r.kind}`);
      reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
    }
  }
  t.deepEqual(Object.fromEntries(reasons), { malformed: 8, bad_mac1: 2 * 72, bad_mac2: 32 });
  // Bytes 4..7 (the responder's index) are covered by mac1 only, as in WireGuard: someone on the path
  // who can rewrite them can as well drop the packet.
  for (let i = 8; i < 60; i++) {
    const bad = Uint8Array.from(resp);
    bad[i] ^= 0x01;
    bad.set(specMac1(a.keys.publicKey, bad.subarray(0, 60)), 60);
    const want = i >= 8 && i < 12 ? 'unknown_index' : 'decrypt';
    t.is(dropped(a.hs.receive(bad, FROM_B)), want, `byte ${i}`);
  }
  const s = session(t, a.hs.receive(resp, FROM_B), 'session');
  t.deepEqual(s.sendKey, reply.session.recvKey);
  t.is(a.hs.counters().failed.decrypt, 48);
  t.is(a.hs.counters().failed.unknown_index, 4);
});

test('a response for an unknown or forgotten index is dropped as unknown_index', async (t) => {
  const { a, b } = await pair();
  const init = a.hs.initiate('b', b.keys.publicKey);
  const reply = b.hs.receive(init, FROM_A) as { message: Uint8Array };
  a.hs.forget(parseInitiation(init).senderIndex);
  t.is(dropped(a.hs.receive(reply.message, FROM_B)), 'unknown_index');
  // A fresh host never initiated at all.
  const { a: fresh } = await pair();
  t.is(dropped(fresh.hs.receive(reply.message, FROM_B)), 'bad_mac1');
  t.is(a.hs.counters().failed.unknown_index, 1);
});

test('indexes are unique among pending and live sessions; forget frees them', async (t) => {
  const { a, b } = await pair(1000);
  const seen = new Set<number>();
  for (let i = 0; i < 50; i++) {
    const { initiator, responder } = handshake(t, a, b, 'a', 'b');
    t.false(seen.has(initiator.localIndex));
    seen.add(initiator.localIndex);
    t.not(responder.localIndex, 0);
  }
  t.is(a.hs.indexCount, 50);
  for (const idx of seen) a.hs.forget(idx);
  t.is(a.hs.indexCount, 0);
  // A degenerate random source cannot make two live sessions share an index.
  const peers = new Map<string, string>();
  let n = 0;
  const keys = generateKeyPair();
  peers.set(toBase64(b.keys.publicKey), 'b');
  const stuck = await Handshaker.create({
    staticKey: keys, now: () => T0, authorise: (pk) => peers.get(toBase64(pk)) ?? null,
    random: (len) => new Uint8Array(len).fill(n++ < 3 ? 7 : 9),
  });
  stuck.initiate('b', b.keys.publicKey);
  stuck.initiate('c', b.keys.publicKey);
  t.throws(() => stuck.initiate('d', b.keys.publicKey), { message: /no free session index/ });
});

test('never throws on junk of any length or type', async (t) => {
  const { a } = await pair();
  const rnd = prng(26);
  for (let len = 0; len < 200; len++) {
    for (const type of [1, 2, 3, 4, 0, 255]) {
      const junk = randomBytes(rnd, len);
      if (len > 0) junk[0] = type;
      if (len > 3) junk.fill(0, 1, 4);
      const r = a.hs.receive(junk, FROM_B);
      t.is(r.kind, 'dropped');
    }
  }
});

test('under load an initiation without mac2 gets a cookie, and the retry with the cookie completes', async (t) => {
  const { a, b, clock } = await pair();
  const rnd = prng(7);
  for (let i = 0; i < 21; i++) b.hs.receive(randomBytes(rnd, 148), { address: '198.18.0.50', port: 9 });
  const first = a.hs.initiate('b', b.keys.publicKey);
  const cookie = b.hs.receive(first, FROM_A);
  t.is(cookie.kind, 'cookie');
  t.is(b.hs.indexCount, 0);
  t.deepEqual(a.hs.receive((cookie as { message: Uint8Array }).message, FROM_B), { kind: 'cookie-stored' });
  clock.t += 1000;
  const retry = a.hs.initiate('b', b.keys.publicKey);
  const reply = b.hs.receive(retry, FROM_A);
  const r = session(t, reply, 'reply');
  const i = session(t, a.hs.receive((reply as { message: Uint8Array }).message, FROM_B), 'session');
  t.deepEqual(i.sendKey, r.recvKey);
  t.like(b.hs.counters(), { sent: { cookie: 1, response: 1 }, failed: { cookie_required: 1 } });
  // The superseded attempt was answered (by a cookie), so it is not a timeout.
  t.is(a.hs.counters().failed.timeout, 0);
  // The cookie is bound to the address:port it was issued to.
  const moved = a.hs.initiate('b', b.keys.publicKey);
  t.is(dropped(b.hs.receive(moved, { address: FROM_A.address, port: FROM_A.port + 1 })), 'bad_mac2');
});

test('a cookie reply not made for our last mac1 does not decrypt', async (t) => {
  const { a, b } = await pair(0);
  const first = a.hs.initiate('b', b.keys.publicKey);
  const c = b.hs.receive(first, FROM_A) as { message: Uint8Array };
  const forged = Uint8Array.from(c.message);
  forged[40] ^= 1;
  t.is(dropped(a.hs.receive(forged, FROM_B)), 'decrypt');
  a.hs.initiate('b', b.keys.publicKey);
  // The cookie reply names the superseded attempt's index.
  t.is(dropped(a.hs.receive(c.message, FROM_B)), 'unknown_index');
});

test('one source flooding is rate limited while another source still completes', async (t) => {
  const peers = new Map<string, string>();
  const clock = { t: T0 };
  const a = await host('a', peers, clock);
  const b = await host('b', peers, clock);
  const flooder = await host('f', new Map(), clock);
  const F = { address: '198.18.0.66', port: 4000 };
  const rnd = prng(9);
  for (let i = 0; i < 21; i++) b.hs.receive(randomBytes(rnd, 148), F);
  // The flooder plays by the cookie rules: fetch a cookie, then flood with a valid mac2.
  const probe = flooder.hs.initiate('b', b.keys.publicKey);
  flooder.hs.receive((b.hs.receive(probe, F) as { message: Uint8Array }).message, FROM_B);
  const flood = flooder.hs.initiate('b', b.keys.publicKey);
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 200; i++) {
    const r = dropped(b.hs.receive(flood, F));
    outcomes.set(r, (outcomes.get(r) ?? 0) + 1);
  }
  // Burst 5: five reach the (expensive) Noise step and are refused as unauthorised, the rest cost a hash.
  t.deepEqual(Object.fromEntries(outcomes), { unauthorised: 5, rate_limited: 195 });
  const first = a.hs.initiate('b', b.keys.publicKey);
  a.hs.receive((b.hs.receive(first, FROM_A) as { message: Uint8Array }).message, FROM_B);
  const retry = a.hs.initiate('b', b.keys.publicKey);
  const reply = b.hs.receive(retry, FROM_A);
  session(t, reply, 'reply');
  session(t, a.hs.receive((reply as { message: Uint8Array }).message, FROM_B), 'session');
  t.is(b.hs.counters().failed.rate_limited, 195);
});

test('a stale cookie (the responder restarted) costs one attempt, then the initiator drops it', async (t) => {
  const { a, b, clock, peers } = await pair(0);
  const first = a.hs.initiate('b', b.keys.publicKey);
  a.hs.receive((b.hs.receive(first, FROM_A) as { message: Uint8Array }).message, FROM_B);
  // b restarts with the same key but a new cookie secret, and is no longer under load.
  const b2 = await Handshaker.create({
    staticKey: b.keys, now: () => clock.t, authorise: (pk) => peers.get(toBase64(pk)) ?? null,
  });
  clock.t += 1000;
  t.is(dropped(b2.receive(a.hs.initiate('b', b.keys.publicKey), FROM_A)), 'bad_mac2');
  clock.t += 1000;
  const third = a.hs.initiate('b', b.keys.publicKey);
  t.deepEqual(parseInitiation(third).mac2, new Uint8Array(16));
  session(t, b2.receive(third, FROM_A), 'reply');
  t.is(a.hs.counters().failed.timeout, 1);
});

test('a cookie expires after 120 s at the initiator', async (t) => {
  const { a, b, clock } = await pair(0);
  const first = a.hs.initiate('b', b.keys.publicKey);
  a.hs.receive((b.hs.receive(first, FROM_A) as { message: Uint8Array }).message, FROM_B);
  clock.t += 119_999;
  t.notDeepEqual(parseInitiation(a.hs.initiate('b', b.keys.publicKey)).mac2, new Uint8Array(16));
  const { a: a2, b: b2, clock: c2 } = await pair(0);
  const f2 = a2.hs.initiate('b', b2.keys.publicKey);
  a2.hs.receive((b2.hs.receive(f2, FROM_A) as { message: Uint8Array }).message, FROM_B);
  c2.t += 120_000;
  t.deepEqual(parseInitiation(a2.hs.initiate('b', b2.keys.publicKey)).mac2, new Uint8Array(16));
});

test('counters name every drop reason and timeouts', async (t) => {
  const { a } = await pair();
  t.deepEqual(Object.keys(a.hs.counters().failed).sort(), [...DROP_REASONS, 'timeout'].sort());
  t.is(dropped(a.hs.receive(new Uint8Array(0), FROM_B)), 'malformed');
  t.is(a.hs.counters().failed.malformed, 1);
});

test('the host key file is created 0600 on first use, read back after, and refused when unsafe or malformed', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-link-key-'));
  try {
    const path = join(dir, 'sub', 'link-key.json');
    const k1 = loadOrCreateKeyPair(path);
    t.is(statSync(path).mode & 0o777, 0o600);
    t.is(statSync(join(dir, 'sub')).mode & 0o777, 0o700);
    const k2 = loadOrCreateKeyPair(path);
    t.deepEqual(k2, k1);
    t.deepEqual(publicKeyOf(k1.secretKey), k1.publicKey);
    t.deepEqual(publicKeyFromBase64(toBase64(k1.publicKey)), k1.publicKey);
    t.is(JSON.parse(readFileSync(path, 'utf8')).publicKey, toBase64(k1.publicKey));
    chmodSync(path, 0o644);
    t.throws(() => loadOrCreateKeyPair(path), { message: new RegExp(`${path}.*group or others`) });
    chmodSync(path, 0o600);
    const other = generateKeyPair();
    writeFileSync(path, JSON.stringify({ type: 'appnet-link-x25519', publicKey: toBase64(other.publicKey), secretKey: toBase64(k1.secretKey) }));
    t.throws(() => loadOrCreateKeyPair(path), { message: new RegExp(`${path} is malformed.*does not belong`) });
    writeFileSync(path, 'not json');
    t.throws(() => loadOrCreateKeyPair(path), { message: new RegExp(`${path} is malformed`) });
    t.throws(() => publicKeyFromBase64('abc'), { message: /not a base64 X25519 public key/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('keys from the key file complete a handshake', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-link-key-'));
  try {
    const ka = loadOrCreateKeyPair(join(dir, 'a.json'));
    const kb = loadOrCreateKeyPair(join(dir, 'b.json'));
    const peers = new Map([[toBase64(ka.publicKey), 'a'], [toBase64(kb.publicKey), 'b']]);
    const mk = (k: KeyPair) => Handshaker.create({ staticKey: k, now: () => T0, authorise: (pk) => peers.get(toBase64(pk)) ?? null });
    const [ha, hb] = await Promise.all([mk(ka), mk(kb)]);
    const reply = hb.receive(ha.initiate('b', kb.publicKey), FROM_A) as { message: Uint8Array; session: Session };
    const s = session(t, ha.receive(reply.message, FROM_B), 'session');
    t.deepEqual(s.sendKey, reply.session.recvKey);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('WireError is what the codecs throw', (t) => {
  t.throws(() => parseCookieReply(new Uint8Array(10)), { instanceOf: WireError });
});
