// One codec, two implementations: the native encapsulation, decapsulation and flow hash must
// give byte-identical results to dataplane/wire for the same inputs.
import test from 'ava';
import { native } from '../dataplane/native.ts';
import { vxlanDecap, vxlanEncap, type VxlanMalformed } from '../dataplane/wire/vxlan.ts';
import { flowHash } from '../dataplane/wire/flow-hash.ts';
import { xorshift32 } from './helpers/random.ts';

const NATIVE_ERRORS: Record<number, VxlanMalformed | 'ok'> = {
  0: 'ok', 1: 'short', 2: 'flags', 3: 'inner short', 4: 'inner ipv4', 5: 'inner arp',
};

/** Random frames: plausible IPv4 TCP/UDP/ICMP, ARP, other ethertypes, and plain noise. */
function randomFrame(rnd: () => number): Buffer {
  const kind = rnd() % 5;
  const len = kind === 4 ? rnd() % 80 : 14 + (rnd() % 1500);
  const f = Buffer.alloc(len);
  for (let i = 0; i < len; i++) f[i] = rnd() & 0xff;
  if (kind <= 2 && len >= 34) {
    f.writeUInt16BE(0x0800, 12);
    const ihl = 5 + (rnd() % 3 === 0 ? rnd() % 11 : 0);
    f[14] = (rnd() % 10 === 0 ? 6 : 4) << 4 | ihl;
    // Mostly a consistent total length, sometimes a lie to exercise the truncation check.
    const honest = Math.min(len - 14, 0xffff);
    f.writeUInt16BE(rnd() % 8 === 0 ? rnd() & 0xffff : honest, 16);
    f[23] = [6, 17, 1][kind];
    if (rnd() % 4 === 0) f.writeUInt16BE(rnd() & 0x3fff, 20); // fragments
  } else if (kind === 3 && len >= 14) {
    f.writeUInt16BE(0x0806, 12);
  }
  return f;
}

test('encap, decap and flow hash agree with the TypeScript codec on 10,000 random frames', (t) => {
  const rnd = xorshift32(0x5eed);
  const seen = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) {
    const frame = randomFrame(rnd);
    const vni = rnd() & 0xffffff;

    const nEnc = native.vxlanEncap(vni, frame);
    const tEnc = vxlanEncap(vni, frame);
    if (!nEnc.equals(Buffer.from(tEnc))) return t.fail(`encap differs for frame ${i}`);

    // Decap the honest datagram, and a mutated one (flags, reserved bytes, or truncation).
    const mutated = Buffer.from(nEnc);
    const m = rnd() % 4;
    if (m === 0) mutated[rnd() % 8] ^= 1 << (rnd() % 8);
    const inputs = [nEnc, m === 1 ? mutated.subarray(0, rnd() % mutated.length) : mutated];
    for (const d of inputs) {
      const n = native.vxlanDecap(d);
      const ts = vxlanDecap(d);
      const nResult = NATIVE_ERRORS[n.error];
      const tResult = ts.ok ? 'ok' : ts.detail;
      if (nResult !== tResult) return t.fail(`decap verdict differs for frame ${i}: native ${nResult}, ts ${tResult}`);
      if (ts.ok && (n.vni !== ts.vni || !Buffer.from(ts.frame).equals(d.subarray(8)))) {
        return t.fail(`decap result differs for frame ${i}`);
      }
      seen.set(tResult, (seen.get(tResult) ?? 0) + 1);
    }
    if (native.flowHash(frame) !== flowHash(frame)) return t.fail(`flow hash differs for frame ${i}`);
  }
  // The random inputs must have exercised every verdict, or the comparison proves little.
  for (const verdict of Object.values(NATIVE_ERRORS)) t.true((seen.get(verdict) ?? 0) > 0, `no input gave '${verdict}'`);
});

test('flow hash: the same inner flow always maps to the same value, different ports usually differ', (t) => {
  const frame = Buffer.alloc(54);
  frame.writeUInt16BE(0x0800, 12);
  frame[14] = 0x45;
  frame.writeUInt16BE(40, 16);
  frame[23] = 6;
  frame.set([198, 18, 42, 1, 198, 18, 42, 2], 26);
  const hashes = new Set<number>();
  for (let port = 1000; port < 1064; port++) {
    frame.writeUInt16BE(port, 34);
    t.is(native.flowHash(frame), native.flowHash(Buffer.from(frame)));
    hashes.add(native.flowHash(frame) % 16);
  }
  t.true(hashes.size > 8, `64 flows fell into only ${hashes.size} of 16 source sockets`);
});

test('encap rejects a VNI above 24 bits in both implementations', (t) => {
  t.throws(() => native.vxlanEncap(0x1000000, Buffer.alloc(20)), { instanceOf: RangeError });
  t.throws(() => vxlanEncap(0x1000000, new Uint8Array(20)));
});
