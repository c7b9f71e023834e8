import test from 'ava';
import type { ExecutionContext } from 'ava';

import { ApiError } from '../control/errors.ts';
import {
  type Holder,
  type IpamState,
  addressView,
  allocate,
  createIpam,
  getReservation,
  listReservations,
  purgeHeld,
  release,
  requireReservation,
  reserve,
  usage,
} from '../control/ipam/ipam.ts';
import { formatIpv4, parseCidr, parseIpv4 } from '../control/net/ipv4-cidr.ts';
import { prng } from './helpers/random.ts';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
const NET: Holder = { kind: 'network', id: 'net-1' };
const nic = (n: number): Holder => ({ kind: 'interface', id: `nic-${n}` });
const T0 = 1_700_000_000_000;

function status(t: ExecutionContext, fn: () => unknown): number | undefined {
  return t.throws(fn, { instanceOf: ApiError })?.status;
}

test('a new IPAM reserves exactly network, gateway and broadcast, held by the network', (t) => {
  const ipam = createIpam('198.18.4.0/24', { now: T0, holder: NET });
  t.deepEqual(listReservations(ipam), [
    { address: '198.18.4.0', type: 'network', holder: NET, since: T0 },
    { address: '198.18.4.1', type: 'gateway', holder: NET, since: T0 },
    { address: '198.18.4.255', type: 'broadcast', holder: NET, since: T0 },
  ]);
  t.is(ipam.gateway, '198.18.4.1');
  t.deepEqual(JSON.parse(JSON.stringify(ipam)), ipam, 'JSON-friendly');
  t.deepEqual(usage(ipam, T0), { size: 256, reserved: 3, held: 0, free: 253 });
  t.is(status(t, () => createIpam('198.18.4.0/31', { now: T0 })), 400);
});

test('allocation starts at .2', (t) => {
  const ipam = createIpam('198.18.4.0/24', { now: T0, holder: NET });
  t.is(allocate(ipam, { type: 'instance', holder: nic(1), now: T0, random: () => 0 }).address, '198.18.4.2');
  t.is(allocate(ipam, { type: 'instance', holder: nic(1), now: T0, random: () => 0.9999 }).address, '198.18.4.254');
  const bare = createIpam('198.18.4.0/29', { now: T0, reserveGateway: false });
  t.is(bare.gateway, null);
  t.is(allocate(bare, { type: 'instance', holder: nic(1), now: T0, random: () => 0 }).address, '198.18.4.1');
});

test('800 random allocations in a /22 leave 803 in use; inputs are never mutated', (t) => {
  const random = prng(22);
  let ipam = createIpam('198.18.8.0/22', { now: T0, holder: NET });
  const seen = new Set<string>();
  for (let i = 0; i < 800; i++) {
    const before = JSON.stringify(ipam);
    const result = allocate(ipam, { type: 'instance', holder: nic(i), now: T0 + i, random });
    t.is(JSON.stringify(ipam), before);
    t.false(seen.has(result.address));
    seen.add(result.address);
    ipam = result.state;
  }
  t.is(listReservations(ipam).length, 803);
});

test('a full /24 gives 507 after 253 allocations', (t) => {
  const random = prng(24);
  let ipam = createIpam('198.18.4.0/24', { now: T0, holder: NET });
  for (let i = 0; i < 253; i++) ipam = allocate(ipam, { type: 'instance', holder: nic(i), now: T0, random }).state;
  const err = t.throws(() => allocate(ipam, { type: 'instance', holder: nic(999), now: T0, random }), { instanceOf: ApiError });
  t.is(err?.status, 507);
  t.regex(err?.message ?? '', /network 198\.18\.4\.0\/24 has no free addresses/);
});

test('reserve: 409 when taken, 400 outside the block or on network/broadcast, bad type 400', (t) => {
  let ipam = createIpam('198.18.4.0/29', { now: T0, holder: NET });
  ipam = reserve(ipam, '198.18.4.5', { type: 'instance', holder: nic(1), now: T0, comment: 'fixed' });
  t.deepEqual(getReservation(ipam, '198.18.4.5', T0), { type: 'instance', holder: nic(1), since: T0, comment: 'fixed' });
  const taken = t.throws(() => reserve(ipam, '198.18.4.5', { type: 'instance', holder: nic(2), now: T0 }), {
    instanceOf: ApiError,
  });
  t.is(taken?.status, 409);
  t.is(taken?.message, 'address 198.18.4.5 in 198.18.4.0/29 is already in use (instance by interface nic-1)');
  t.is(status(t, () => reserve(ipam, '198.18.4.1', { type: 'routed', holder: NET, now: T0 })), 409);
  const outside = t.throws(() => reserve(ipam, '198.18.4.8', { type: 'instance', holder: null, now: T0 }));
  t.is(outside?.message, 'address 198.18.4.8 is outside network block 198.18.4.0/29');
  t.is(status(t, () => reserve(ipam, '198.18.4.0', { type: 'instance', holder: null, now: T0 })), 400);
  t.is(status(t, () => reserve(ipam, '198.18.4.7', { type: 'instance', holder: null, now: T0 })), 400);
  t.is(status(t, () => reserve(ipam, '198.18.4.02', { type: 'instance', holder: null, now: T0 })), 400);
  // @ts-expect-error: network is not a type callers may reserve.
  t.is(status(t, () => reserve(ipam, '198.18.4.3', { type: 'network', holder: null, now: T0 })), 400);
});

test('release holds the address back; reserve of it is 409 until the hold-back ends', (t) => {
  let ipam = createIpam('198.18.4.0/29', { now: T0, holder: NET });
  ipam = reserve(ipam, '198.18.4.3', { type: 'instance', holder: nic(1), now: T0 });
  ipam = release(ipam, '198.18.4.3', T0 + 1_000);
  const halo = getReservation(ipam, '198.18.4.3', T0 + 1_000);
  t.is(halo?.type, 'deletion-halo');
  t.is(halo?.holder, null);
  t.deepEqual(halo?.previous, { type: 'instance', holder: nic(1) });
  const err = t.throws(() => reserve(ipam, '198.18.4.3', { type: 'instance', holder: nic(1), now: T0 + 61_000 }), {
    instanceOf: ApiError,
  });
  t.is(err?.status, 409);
  t.regex(err?.message ?? '', /released 60 s ago and is held back for 300 s after release; retry in 240 s/);
  t.is(getReservation(ipam, '198.18.4.3', T0 + 301_000), null, 'free once the hold-back has passed');
  t.notThrows(() => reserve(ipam, '198.18.4.3', { type: 'instance', holder: nic(2), now: T0 + 301_000 }));
  // SF's release_haloed(0) frees every hold-back at once.
  t.is(getReservation(purgeHeld(ipam, T0 + 1_000, 0), '198.18.4.3', T0 + 1_000), null);
});

test('release is idempotent and refuses network, broadcast and gateway', (t) => {
  const ipam = createIpam('198.18.4.0/29', { now: T0, holder: NET });
  t.is(release(ipam, '198.18.4.4', T0), ipam, 'releasing a free address changes nothing');
  const held = release(reserve(ipam, '198.18.4.4', { type: 'instance', holder: null, now: T0 }), '198.18.4.4', T0);
  t.is(release(held, '198.18.4.4', T0 + 5), held, 'releasing twice changes nothing');
  for (const address of ['198.18.4.0', '198.18.4.1', '198.18.4.7', '198.18.5.1']) {
    t.is(status(t, () => release(ipam, address, T0)), 400, address);
  }
});

test('congestion fallback: the oldest hold-back of at least 30 s, never a younger one', (t) => {
  let ipam = createIpam('198.18.4.0/29', { now: T0, holder: NET });
  for (let i = 2; i <= 6; i++) ipam = reserve(ipam, `198.18.4.${i}`, { type: 'instance', holder: nic(i), now: T0 });
  ipam = release(ipam, '198.18.4.5', T0 + 10_000);
  ipam = release(ipam, '198.18.4.3', T0 + 20_000);
  const alloc = (now: number) => allocate(ipam, { type: 'instance', holder: nic(9), now, random: prng(1) });
  t.is(status(t, () => alloc(T0 + 39_999)), 507, 'both released less than 30 s ago');
  t.is(alloc(T0 + 40_000).address, '198.18.4.5');
  t.is(alloc(T0 + 60_000).address, '198.18.4.5', 'the longest-released wins');
  const strict = { ...ipam, congestedHoldBackMs: ipam.holdBackMs };
  t.is(status(t, () => allocate(strict, { type: 'instance', holder: null, now: T0 + 309_999 })), 507);
  t.is(allocate(strict, { type: 'instance', holder: null, now: T0 + 310_000 }).address, '198.18.4.5');
});

test('listing, address view and requireReservation', (t) => {
  let ipam = createIpam('198.19.20.0/24', { now: T0, holder: { kind: 'network', id: 'floating' } });
  ipam = reserve(ipam, '198.19.20.9', { type: 'routed', holder: NET, now: T0 + 2_000 });
  ipam = allocate(ipam, { type: 'gateway', holder: NET, now: T0, random: () => 0.5 }).state;
  t.deepEqual(addressView(listReservations(ipam).find((r) => r.address === '198.19.20.9')!), {
    address: '198.19.20.9',
    user: ['network', 'net-1'],
    when: (T0 + 2_000) / 1000,
    type: 'routed',
    comment: null,
  });
  const sorted = listReservations(ipam).map((r) => parseIpv4(r.address));
  t.deepEqual(sorted, [...sorted].sort((a, b) => a - b));
  t.is(requireReservation(ipam, '198.19.20.9', T0, { type: 'routed', holder: NET }).type, 'routed');
  t.is(status(t, () => requireReservation(ipam, '198.19.20.9', T0, { type: 'routed', holder: nic(1) })), 404);
  t.is(status(t, () => requireReservation(ipam, '198.19.20.10', T0, { type: 'routed' })), 404);
  const released = release(ipam, '198.19.20.9', T0 + 3_000);
  t.is(listReservations(released, T0 + 3_000).length, 5);
  t.is(listReservations(released, T0 + 303_000).length, 4, 'expired hold-backs are not listed');
});

// ---- Property test: random operation sequences against a simple model ----

type Slot = { kind: 'reserved'; holder: string } | { kind: 'held'; at: number };

interface RunConfig {
  seed: number;
  prefixLen: number;
  reserveGateway: boolean;
  congestedHoldBackMs: number;
}

const HOLD = 300_000;

function runProperty(t: ExecutionContext, config: RunConfig, steps: number): void {
  const random = prng(config.seed);
  const pick = (n: number) => Math.floor(random() * n);
  const cidr = parseCidr(`198.18.64.0/${config.prefixLen}`);
  const size = cidr.size;
  const first = config.reserveGateway ? 2 : 1;
  const last = size - 2;
  const addr = (index: number) => formatIpv4(cidr.network + index);
  let now = T0;
  let ipam: IpamState = createIpam(cidr, {
    now,
    holder: NET,
    reserveGateway: config.reserveGateway,
    congestedHoldBackMs: config.congestedHoldBackMs,
  });
  const model = new Map<number, Slot>();
  const fixed = new Set([0, size - 1, ...(config.reserveGateway ? [1] : [])]);
  for (const index of fixed) model.set(index, { kind: 'reserved', holder: 'network:net-1' });

  const age = (slot: Slot | undefined) => (slot?.kind === 'held' ? now - slot.at : null);
  const blocking = (i: number) => {
    const slot = model.get(i);
    const a = age(slot);
    return slot !== undefined && (a === null || a < HOLD);
  };
  const counts = { alloc: 0, fallback: 0, full: 0, reserve: 0, conflict: 0, release: 0 };
  let nextHolder = 0;

  for (let step = 0; step < steps; step++) {
    now += pick(4) === 0 ? pick(120_000) : pick(3_000);
    const before = JSON.stringify(ipam);
    const roll = random();
    if (roll < 0.45) {
      const holder = nic(nextHolder++);
      const anyFree = (() => {
        for (let i = first; i <= last; i++) if (!blocking(i)) return true;
        return false;
      })();
      const softHeld = [...model.entries()].filter(
        ([i, s]) => s.kind === 'held' && i >= first && i <= last && (age(s) ?? 0) >= config.congestedHoldBackMs,
      );
      try {
        const result = allocate(ipam, { type: 'instance', holder, now, random });
        const index = parseIpv4(result.address) - cidr.network;
        const slot = model.get(index);
        t.true(index >= first && index <= last, `never network, broadcast or gateway: ${result.address}`);
        t.true(slot === undefined || slot.kind === 'held', `no double allocation: ${result.address}`);
        const a = age(slot);
        if (a !== null && a < HOLD) {
          t.true(a >= config.congestedHoldBackMs, 'never within the minimum hold-back');
          t.false(anyFree, 'a held-back address only when nothing else is free');
          const oldest = Math.min(...softHeld.map(([, s]) => (s as { at: number }).at));
          t.is((slot as { at: number }).at, oldest, 'the longest-released first');
          counts.fallback++;
        }
        model.set(index, { kind: 'reserved', holder: `${holder.kind}:${holder.id}` });
        ipam = result.state;
        counts.alloc++;
      } catch (err) {
        t.is((err as ApiError).status, 507, String(err));
        t.false(anyFree, '507 only when no address is free');
        t.is(softHeld.length, 0, '507 only when no hold-back is old enough for the fallback');
        counts.full++;
      }
    } else if (roll < 0.65) {
      const index = pick(size + 4) - 2; // includes just outside the block
      const expected =
        index < 0 || index >= size || index === 0 || index === size - 1 ? 400 : blocking(index) ? 409 : 200;
      try {
        ipam = reserve(ipam, formatIpv4(cidr.network + index), { type: 'floating', holder: nic(-1), now });
        t.is(expected, 200, `reserve ${index} succeeded`);
        model.set(index, { kind: 'reserved', holder: 'interface:nic--1' });
        counts.reserve++;
      } catch (err) {
        t.is((err as ApiError).status, expected, `reserve ${index}: ${String(err)}`);
        if (expected === 409) counts.conflict++;
      }
    } else {
      const live = [...model.entries()].filter(([i, s]) => s.kind === 'reserved' && !fixed.has(i));
      const index = live.length > 0 && random() < 0.8 ? live[pick(live.length)][0] : pick(size);
      const slot = model.get(index);
      const expected = fixed.has(index) ? 400 : 200;
      try {
        const next = release(ipam, addr(index), now);
        t.is(expected, 200);
        if (slot?.kind === 'reserved') {
          model.set(index, { kind: 'held', at: now });
          counts.release++;
        } else {
          t.is(next, ipam, 'releasing a free or held address is a no-op');
        }
        ipam = next;
      } catch (err) {
        t.is((err as ApiError).status, expected, String(err));
      }
    }
    // Functions never mutate their input, and the state survives a JSON round trip.
    if (step % 50 === 0) t.is(JSON.stringify(JSON.parse(before)), before);
    ipam = JSON.parse(JSON.stringify(ipam)) as IpamState;

    // The listing at `now` is exactly the model's blocking set.
    const listed = new Map(listReservations(ipam, now).map((r) => [parseIpv4(r.address) - cidr.network, r]));
    for (let i = 0; i < size; i++) {
      const slot = model.get(i);
      if (!blocking(i)) {
        if (listed.has(i)) t.fail(`step ${step}: ${addr(i)} listed but free in the model`);
        continue;
      }
      const row = listed.get(i);
      if (row === undefined) {
        t.fail(`step ${step}: ${addr(i)} missing from the listing`);
      } else if (slot?.kind === 'held' && row.type !== 'deletion-halo') {
        t.fail(`step ${step}: ${addr(i)} should be held back`);
      } else if (slot?.kind === 'reserved' && `${row.holder?.kind}:${row.holder?.id}` !== slot.holder) {
        t.fail(`step ${step}: ${addr(i)} held by the wrong holder`);
      }
    }
  }
  // Every path was exercised, the fallback only when it is enabled.
  t.true(counts.alloc > 0 && counts.full > 0 && counts.release > 0 && counts.conflict > 0, JSON.stringify(counts));
  t.is(counts.fallback > 0, config.congestedHoldBackMs < HOLD, JSON.stringify(counts));
}

for (const [seed, prefixLen, reserveGateway] of [
  [1, 29, true],
  [2, 28, true],
  [3, 27, true],
  [4, 29, false],
  [5, 26, true],
] as const) {
  test(`property: allocate/reserve/release with fallback (seed ${seed}, /${prefixLen})`, (t) => {
    runProperty(t, { seed, prefixLen, reserveGateway, congestedHoldBackMs: 30_000 }, 1_500);
  });
  test(`property: strict hold-back (seed ${seed}, /${prefixLen})`, (t) => {
    runProperty(t, { seed: seed + 100, prefixLen, reserveGateway, congestedHoldBackMs: HOLD }, 1_500);
  });
}
