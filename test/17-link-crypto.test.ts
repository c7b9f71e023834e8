// Encrypted link transport: the native data-message seal/open and replay window must agree byte for
// byte and decision for decision with the TypeScript reference in dataplane/wire/link.ts, and both
// must match an independent ChaCha20-Poly1305 (OpenSSL, through node:crypto).
import test from 'ava';
import { createCipheriv } from 'node:crypto';
import { native } from '../dataplane/native.ts';
import {
  LINK_HEADER_LEN, LINK_OVERHEAD, LINK_TAG_LEN, LINK_TYPE_DATA, LINK_UDP_PORT,
  LinkDataView, REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES, REPLAY_BITMAP_BITS, REPLAY_WINDOW, ReplayWindow,
  emitLinkDataHeader, openData, parseLinkDataHeader, sealData,
} from '../dataplane/wire/index.ts';
import type { LinkOpenResult } from '../dataplane/wire/index.ts';
import { randomBytes, xorshift32 } from './helpers/random.ts';
import { hex, throwsWire } from './helpers/wire-assert.ts';

const KEY1 = new Uint8Array(32).fill(1);
// 'hello' from receiver index 7's peer, counter 5, key 01..01: checked against OpenSSL below.
const HELLO = hex(`
  04 000000 07000000 0500000000000000
  761d0e9b8f
  120ae2f82e3bc1fee8d65db262ee493f`);

/** ChaCha20-Poly1305-IETF from OpenSSL: header ++ ciphertext ++ tag, with our nonce and AD rules. */
function openSslSeal(key: Uint8Array, header: Uint8Array, counter: bigint, pt: Uint8Array): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64LE(counter, 4);
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  c.setAAD(header, { plaintextLength: pt.length });
  const ct = Buffer.concat([c.update(pt), c.final()]);
  return Buffer.concat([header, ct, c.getAuthTag()]);
}

function u64(rnd: () => number): bigint {
  return (BigInt(rnd()) << 32n) | BigInt(rnd());
}

const b = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** A verdict comparable across implementations: the error name, or 'ok:' + the opened fields. */
function verdict(r: LinkOpenResult): string {
  return 'error' in r ? r.error : `ok:${r.receiver}:${r.counter}:${Buffer.from(r.plaintext).toString('hex')}`;
}

test('constants: 32 bytes of overhead, WireGuard limits, port 51830, window 4032 of a 4096-bit map', (t) => {
  t.is(LINK_HEADER_LEN + LINK_TAG_LEN, LINK_OVERHEAD);
  t.is(LINK_OVERHEAD, 32);
  t.is(LINK_TYPE_DATA, 4);
  t.is(LINK_UDP_PORT, 51830);
  t.is(REKEY_AFTER_MESSAGES, 2n ** 60n);
  t.is(REJECT_AFTER_MESSAGES, 2n ** 64n - 2n ** 13n - 1n);
  t.is(REPLAY_BITMAP_BITS, 4096);
  t.is(REPLAY_WINDOW, 4032);
  t.true(REPLAY_WINDOW >= 2048);
});

test('literal message: both implementations and OpenSSL produce the same bytes, header in clear', (t) => {
  const pt = new TextEncoder().encode('hello');
  t.deepEqual(sealData(KEY1, 7, 5n, pt), HELLO);
  t.deepEqual(new Uint8Array(native.linkSeal(b(KEY1), 7, 5n, b(pt))), HELLO);
  t.deepEqual(new Uint8Array(openSslSeal(KEY1, HELLO.subarray(0, 16), 5n, pt)), HELLO);
  t.deepEqual(parseLinkDataHeader(HELLO), { receiver: 7, counter: 5n });
  const view = new LinkDataView(HELLO);
  t.deepEqual(view.ciphertext, hex('761d0e9b8f'));
  t.deepEqual(view.tag, HELLO.subarray(21));
  t.deepEqual(openData(KEY1, HELLO), { receiver: 7, counter: 5n, plaintext: pt });
});

test('header codec: emit writes little-endian fields, parse names the field it refuses', (t) => {
  const buf = new Uint8Array(20).fill(0xee);
  t.is(emitLinkDataHeader({ receiver: 0x01020304, counter: 0x05060708090a0b0cn }, buf, 2), 16);
  t.deepEqual(buf, hex('eeee 04000000 04030201 0c0b0a0908070605 eeee'));
  throwsWire(t, () => parseLinkDataHeader(HELLO.subarray(0, 31)), 'link', 'length', 0);
  const badType = HELLO.slice();
  badType[0] = 1;
  throwsWire(t, () => parseLinkDataHeader(badType), 'link', 'type', 0);
  const badReserved = HELLO.slice();
  badReserved[3] = 0x80;
  throwsWire(t, () => parseLinkDataHeader(badReserved), 'link', 'reserved', 3);
  throwsWire(t, () => emitLinkDataHeader({ receiver: 2 ** 32, counter: 0n }, buf), 'link', 'receiver', 4);
  throwsWire(t, () => emitLinkDataHeader({ receiver: 1, counter: -1n }, buf), 'link', 'counter', 8);
  throwsWire(t, () => emitLinkDataHeader({ receiver: 1, counter: 0n }, buf, 5), 'link', 'buffer', 5);
  throwsWire(t, () => sealData(KEY1, 1, REJECT_AFTER_MESSAGES, new Uint8Array(0)), 'link', 'counter', 8);
  t.throws(() => sealData(new Uint8Array(16), 1, 0n, new Uint8Array(0)), { instanceOf: TypeError, message: /key/ });
});

test('native arguments: TypeError naming the argument', (t) => {
  const key = b(KEY1);
  const pt = Buffer.alloc(1);
  t.throws(() => native.linkSeal(Buffer.alloc(31), 1, 0n, pt), { instanceOf: TypeError, message: /^key must be 32 bytes/ });
  t.throws(() => native.linkSeal(key, -1, 0n, pt), { instanceOf: TypeError, message: /^receiver/ });
  t.throws(() => native.linkSeal(key, 2 ** 32, 0n, pt), { instanceOf: TypeError, message: /^receiver/ });
  t.throws(() => native.linkSeal(key, 1, 0 as unknown as bigint, pt), { instanceOf: TypeError, message: /^counter/ });
  t.throws(() => native.linkSeal(key, 1, REJECT_AFTER_MESSAGES, pt), { instanceOf: TypeError, message: /^counter.*rekey/ });
  t.throws(() => native.linkSeal(key, 1, 0n, 'x' as unknown as Buffer), { instanceOf: TypeError, message: /^plaintext/ });
  t.throws(() => native.linkOpen(key, [] as unknown as Buffer), { instanceOf: TypeError, message: /^message/ });
  const w = new native.ReplayWindow();
  t.throws(() => w.mark(-1n), { instanceOf: TypeError, message: /^counter/ });
  t.throws(() => w.check(2n ** 64n), { instanceOf: TypeError, message: /^counter/ });
});

test('seal is byte-identical native vs TypeScript on 2,000 random messages; each opens in the other; in place agrees', (t) => {
  const rnd = xorshift32(0x11c4);
  const EDGES = [0n, 2n ** 32n, 2n ** 60n - 1n, REJECT_AFTER_MESSAGES - 1n];
  const LENGTHS = [0, 1, 15, 16, 17, 64, 1400, 8950, 9000];
  let openSslChecked = 0;
  for (let i = 0; i < 2000; i++) {
    const key = randomBytes(rnd, 32);
    const receiver = i % 97 === 0 ? 0xffffffff : i % 89 === 0 ? 0 : rnd();
    const counter = i < EDGES.length * 25 ? EDGES[i % EDGES.length] : u64(rnd) % REJECT_AFTER_MESSAGES;
    const len = i % 3 === 0 ? LENGTHS[rnd() % LENGTHS.length] : rnd() % 9001;
    const pt = randomBytes(rnd, len);

    const n = native.linkSeal(b(key), receiver, counter, b(pt));
    const ts = sealData(key, receiver, counter, pt);
    if (!n.equals(b(ts))) return t.fail(`seal differs for message ${i} (len ${len}, counter ${counter})`);
    if (n.length !== len + 32) return t.fail(`message ${i} is ${n.length} bytes, expected ${len + 32}`);
    if (!native.linkSealInPlace(b(key), receiver, counter, b(pt)).equals(n)) return t.fail(`in-place seal differs for message ${i}`);
    if (i % 20 === 0) {
      if (!openSslSeal(key, n.subarray(0, 16), counter, pt).equals(n)) return t.fail(`OpenSSL disagrees on message ${i}`);
      openSslChecked++;
    }

    const want = `ok:${receiver >>> 0}:${counter}:${Buffer.from(pt).toString('hex')}`;
    if (verdict(openData(key, n)) !== want) return t.fail(`TypeScript cannot open native message ${i}`);
    if (verdict(native.linkOpen(b(key), b(ts))) !== want) return t.fail(`native cannot open TypeScript message ${i}`);
    const inPlace = native.linkOpenInPlace(b(key), b(ts));
    if (!inPlace || !inPlace.equals(b(pt))) return t.fail(`in-place open differs for message ${i}`);
  }
  t.is(openSslChecked, 100);
  t.pass();
});

test('every single-bit flip of header, ciphertext and tag is refused by both; wrong key and truncation too', (t) => {
  const rnd = xorshift32(0xf11b);
  const expected = (byte: number): string => (byte === 0 ? 'type' : byte <= 3 ? 'reserved' : 'tag');
  let flips = 0;
  for (const len of [0, 1, 60, 200]) {
    const key = randomBytes(rnd, 32);
    const msg = sealData(key, rnd(), u64(rnd) % REJECT_AFTER_MESSAGES, randomBytes(rnd, len));
    for (let bit = 0; bit < msg.length * 8; bit++) {
      const m = msg.slice();
      m[bit >> 3] ^= 1 << (bit & 7);
      const want = expected(bit >> 3);
      const ts = verdict(openData(key, m));
      const n = verdict(native.linkOpen(b(key), b(m)));
      if (ts !== want || n !== want) return t.fail(`flip of bit ${bit} (len ${len}): ts ${ts}, native ${n}, expected ${want}`);
      if (native.linkOpenInPlace(b(key), b(m)) !== null) return t.fail(`in-place open accepted flip of bit ${bit}`);
      flips++;
    }
    const wrongKey = key.slice();
    wrongKey[rnd() % 32] ^= 1 << (rnd() % 8);
    t.is(verdict(openData(wrongKey, msg)), 'tag');
    t.is(verdict(native.linkOpen(b(wrongKey), b(msg))), 'tag');
    for (let cut = 0; cut < msg.length; cut++) {
      const want = cut < LINK_OVERHEAD ? 'short' : 'tag';
      const ts = verdict(openData(key, msg.subarray(0, cut)));
      const n = verdict(native.linkOpen(b(key), b(msg.subarray(0, cut))));
      if (ts !== want || n !== want) return t.fail(`truncation to ${cut} (len ${len}): ts ${ts}, native ${n}, expected ${want}`);
    }
  }
  t.is(flips, 8 * (4 * 32 + 0 + 1 + 60 + 200));
});

/** The obvious, unbounded replay rule the ring must agree with. */
class NaiveWindow {
  seen = new Set<bigint>();
  highest: bigint | undefined;
  accepts(c: bigint): boolean {
    if (c >= REJECT_AFTER_MESSAGES || this.seen.has(c)) return false;
    return this.highest === undefined || c > this.highest || this.highest - c <= BigInt(REPLAY_WINDOW);
  }
  mark(c: bigint): boolean {
    if (!this.accepts(c)) return false;
    this.seen.add(c);
    if (this.highest === undefined || c > this.highest) this.highest = c;
    return true;
  }
}

test('replay window: native and TypeScript agree with a naive model over random sequences', (t) => {
  const rnd = xorshift32(0x6479);
  const reasons = new Map<string, number>();
  const count = (k: string): void => { reasons.set(k, (reasons.get(k) ?? 0) + 1); };
  for (let run = 0; run < 6; run++) {
    const model = new NaiveWindow();
    const nw = new native.ReplayWindow();
    const tw = new ReplayWindow();
    const history: bigint[] = [];
    let hi = run === 5 ? REJECT_AFTER_MESSAGES - 20_000n : 0n;
    for (let i = 0; i < 6000; i++) {
      const k = rnd() % 100;
      let c: bigint;
      if (k < 35) c = hi + 1n + BigInt(rnd() % 3);                                    // in order, small gaps
      else if (k < 55) c = hi - BigInt(rnd() % (REPLAY_WINDOW + 1));                 // reordered within
      else if (k < 62) c = hi - BigInt(REPLAY_WINDOW) + BigInt(rnd() % 3) - 1n;      // at the edge
      else if (k < 72) c = hi - BigInt(REPLAY_WINDOW + 1 + (rnd() % 20_000));        // beyond the window
      else if (k < 85) c = history.length ? history[rnd() % history.length] : 0n;    // duplicate
      else if (k < 92) c = hi + BigInt(64 + (rnd() % 9000));                         // jump of blocks
      else if (k < 97) c = hi + (BigInt(rnd()) << BigInt(rnd() % 24));              // big jump
      else c = REJECT_AFTER_MESSAGES + BigInt(rnd() % 4);                            // at/over the limit
      if (c < 0n) c = BigInt(rnd() % 50);
      if (c >= 2n ** 64n) c = 2n ** 64n - 1n;

      const want = model.accepts(c);
      const checks = [nw.check(c), tw.check(c), nw.check(c), tw.check(c)];
      if (checks.some((x) => x !== want)) return t.fail(`run ${run} step ${i}: check(${c}) gave ${checks}, model ${want}`);
      // Every fifth accepted counter is a forgery: checked, but its tag fails, so it is never marked.
      // check() must have left no trace, which later decisions against the model would reveal.
      if (want && rnd() % 5 === 0) { count('forged'); continue; }
      const marks = [nw.mark(c), tw.mark(c)];
      model.mark(c);
      if (marks.some((x) => x !== want)) return t.fail(`run ${run} step ${i}: mark(${c}) gave ${marks}, model ${want}`);
      if (nw.check(c) || tw.check(c)) return t.fail(`run ${run} step ${i}: ${c} still accepted after mark`);
      if (want) { history.push(c); hi = model.highest!; count('accepted'); }
      else if (c >= REJECT_AFTER_MESSAGES) count('limit');
      else if (model.seen.has(c)) count('replay');
      else count('too old');
    }
    nw.reset();
    tw.reset();
    if (!nw.check(0n) || !tw.check(0n) || !nw.mark(history[0] ?? 0n) || !tw.mark(history[0] ?? 0n)) {
      return t.fail(`run ${run}: reset did not forget`);
    }
  }
  for (const k of ['accepted', 'forged', 'replay', 'too old', 'limit']) t.true((reasons.get(k) ?? 0) > 50, `only ${reasons.get(k) ?? 0} '${k}'`);
});

test('replay window: exactly 4032 behind the highest is accepted, 4033 is not; the limit is refused', (t) => {
  for (const w of [new native.ReplayWindow(), new ReplayWindow()]) {
    t.true(w.mark(10_000n));
    t.false(w.mark(10_000n));
    t.true(w.check(10_000n - 4032n));
    t.false(w.check(10_000n - 4033n));
    t.true(w.mark(10_000n - 4032n));
    t.false(w.mark(10_000n - 4033n));
    t.true(w.mark(REJECT_AFTER_MESSAGES - 1n));
    t.false(w.check(REJECT_AFTER_MESSAGES));
    t.false(w.mark(REJECT_AFTER_MESSAGES));
    t.false(w.mark(2n ** 64n - 1n));
    t.false(w.mark(10_001n));
    w.reset();
    t.true(w.mark(10_001n));
  }
});
