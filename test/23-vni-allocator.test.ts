import test from 'ava';

import { ApiError } from '../control/errors.ts';
import { VNI_MAX, VNI_MIN, allocateVni, checkRequestedVni, isValidVni, vniHex } from '../control/networks/vni-allocator.ts';
import { prng } from './helpers/random.ts';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
test('range constants and validity', (t) => {
  t.is(VNI_MIN, 1);
  t.is(VNI_MAX, 16777215);
  t.false(isValidVni(0));
  t.true(isValidVni(1));
  t.true(isValidVni(0xffffff));
  t.false(isValidVni(0x1000000));
  t.false(isValidVni(2.5));
  t.false(isValidVni('7'));
  t.is(vniHex(42), '00002a');
  t.is(vniHex(0xffffff), 'ffffff');
});

test('random allocation stays in range and never returns a used VNI', (t) => {
  const random = prng(1);
  const used = new Set<number>();
  for (let i = 0; i < 5_000; i++) {
    const vni = allocateVni(used, { random });
    t.true(isValidVni(vni));
    t.false(used.has(vni));
    used.add(vni);
  }
  t.is(used.size, 5_000);
});

test('extreme random values stay in range', (t) => {
  t.is(allocateVni([], { random: () => 0 }), 1);
  t.is(allocateVni([], { random: () => 0.9999999999999999 }), VNI_MAX);
  t.is(allocateVni([], { random: () => 1 }), VNI_MAX, 'a source that returns 1 is clamped');
});

test('falls back to a linear probe when random picks keep colliding', (t) => {
  // The random source always lands on 5, which is used: the probe finds the next free one.
  const range = { min: 1, max: 10 };
  t.is(allocateVni([5, 6, 7], { random: () => 0.4, range }), 8);
  // Wraps around the end of the range.
  t.is(allocateVni([9, 10], { random: () => 0.85, range }), 1);
});

test('reserved VNIs are never handed out', (t) => {
  const random = prng(7);
  const range = { min: 100, max: 119 };
  const reserved = [100, 101, 102, 110];
  const used = new Set<number>();
  for (let i = 0; i < 16; i++) {
    const vni = allocateVni(used, { random, range, reserved });
    t.false(reserved.includes(vni));
    t.false(used.has(vni));
    used.add(vni);
  }
  const err = t.throws(() => allocateVni(used, { random, range, reserved }), { instanceOf: ApiError });
  t.is(err?.status, 507);
  t.regex(err?.message ?? '', /no free VXLAN id in 100\.\.119/);
});

test('exhaustion is 507 exactly when every VNI in range is taken', (t) => {
  const random = prng(3);
  const range = { min: 1, max: 64 };
  const used = new Set<number>();
  for (let i = 0; i < 64; i++) used.add(allocateVni(used, { random, range }));
  t.deepEqual([...used].sort((a, b) => a - b), Array.from({ length: 64 }, (_, i) => i + 1));
  t.is(t.throws(() => allocateVni(used, { random, range }))?.constructor.name, 'InsufficientResources');
  used.delete(33);
  t.is(allocateVni(used, { random, range }), 33);
});

test('bad ranges are programming errors', (t) => {
  t.throws(() => allocateVni([], { range: { min: 0, max: 10 } }), { instanceOf: RangeError });
  t.throws(() => allocateVni([], { range: { min: 10, max: 9 } }), { instanceOf: RangeError });
});

test('a requested VNI is checked for range (400) and uniqueness (409)', (t) => {
  t.is(checkRequestedVni(4789, [1, 2]), 4789);
  for (const bad of [0, -1, 0x1000000, 1.5, '42', null]) {
    const err = t.throws(() => checkRequestedVni(bad, []), { instanceOf: ApiError });
    t.is(err?.status, 400, String(bad));
    t.regex(err?.message ?? '', /^vxlan_id .* is invalid: it must be an integer 1\.\.16777215/);
  }
  const taken = t.throws(() => checkRequestedVni(42, new Set([42])), { instanceOf: ApiError });
  t.is(taken?.status, 409);
  t.regex(taken?.message ?? '', /vxlan_id 42 is already used/);
  const reserved = t.throws(() => checkRequestedVni(7, [], { reserved: [7] }), { instanceOf: ApiError });
  t.is(reserved?.status, 409);
  t.is(t.throws(() => checkRequestedVni(50, [], { range: { min: 1, max: 10 } }))?.message.includes('1..10'), true);
});
