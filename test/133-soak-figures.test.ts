// The soak's arithmetic (bench/soak-figures.ts): which counters must not move, what moved since the
// baseline, event-loop utilisation between samples, and the least-squares slopes of RSS and descriptors.
import test from 'ava';
import { elu, minuteLine, moved, mustStayZero, slope, summarise, type DaemonSample } from '../bench/soak-figures.ts';

const drops = (over: Record<string, number> = {}) => ({ malformed: 0, queue_full: 0, filtered: 0, ...over });

function sample(atS: number, rssMb: number, fds: number, over: { port?: Record<string, number>; tag?: number; replay?: number; hs?: number; nak?: number; active?: number } = {}): DaemonSample {
  return {
    atS,
    stats: { eluIdleMs: atS * 1000 - (over.active ?? 0), eluActiveMs: over.active ?? 0, rssBytes: rssMb * 2 ** 20, openFds: fds },
    counters: {
      wire: { drops: drops() },
      vnis: { 42: { drops: drops() } },
      ports: [{ drops: drops(over.port) }, { drops: drops({ queue_full: 1 }) }],
      punt: { dropped: 0 },
      links: { drops: { bad_tag: over.tag ?? 0, unknown_index: 0 } },
    },
    links: { handshakes: { failed: { timeout: over.hs ?? 0, bad_mac: 0 } }, peers: [{ drops: { replay: over.replay ?? 0, bad_tag: 0 } }] },
    services: { dhcp: { sent: { NAK: over.nak ?? 0, ACK: 9 } } },
  };
}

test('mustStayZero sums every drop block by reason and leaves out zeros and provoked reasons', (t) => {
  const s = sample(0, 100, 50, { port: { filtered: 3, queue_full: 2 }, tag: 1, replay: 4, hs: 2, nak: 1 });
  t.deepEqual(mustStayZero(s), {
    engine_drop_filtered: 3, engine_drop_queue_full: 3, link_drop_bad_tag: 1, link_drop_replay: 4, handshake_failed_timeout: 2, dhcp_nak: 1,
  });
  t.deepEqual(mustStayZero(s, new Set(['filtered'])), {
    engine_drop_queue_full: 3, link_drop_bad_tag: 1, link_drop_replay: 4, handshake_failed_timeout: 2, dhcp_nak: 1,
  });
});

test('moved lists only the counters that changed since the baseline', (t) => {
  t.deepEqual(moved({ a: 1, b: 2 }, { a: 1, b: 5, c: 1 }), { b: 3, c: 1 });
  t.deepEqual(moved({ a: 1 }, { a: 1 }), {});
});

test('elu is the active share of the time between two samples', (t) => {
  t.is(elu(sample(0, 1, 1), sample(10, 1, 1, { active: 2500 })), 0.25);
});

test('slope fits a least-squares line; a flat or single series has slope 0', (t) => {
  t.is(slope([0, 1, 2, 3], [10, 12, 14, 16]), 2);
  t.is(slope([0, 1, 2], [5, 5, 5]), 0);
  t.is(slope([1], [7]), 0);
  t.is(slope([0, 1, 2, 3], [0, 3, 1, 4]), 1); // noisy points: (5 / 5) from the normal equations
});

test('summarise gives per-hour slopes and fails the run when a must-be-zero counter moved', (t) => {
  const steady = [sample(0, 100, 50), sample(1800, 100, 50), sample(3600, 100, 50)];
  const leaking = [sample(0, 100, 50), sample(1800, 110, 60), sample(3600, 120, 70, { replay: 1 })];
  const base = { h1: mustStayZero(steady[0]), h2: mustStayZero(leaking[0]) };
  const s = summarise({ h1: steady, h2: leaking }, base);
  t.deepEqual(s.rssMbPerHour, { h1: 0, h2: 20 });
  t.deepEqual(s.fdsPerHour, { h1: 0, h2: 20 });
  t.deepEqual(s.movedCounters, { h1: {}, h2: { link_drop_replay: 1 } });
  t.false(s.ok);
  t.true(summarise({ h1: steady }, { h1: base.h1 }).ok);
});

test('the minute line names what moved, or says none did', (t) => {
  const a = sample(0, 100, 50);
  t.regex(minuteLine('h1', a, sample(60, 101.5, 51, { active: 6000 }), mustStayZero(a)), /^h1: rss 101\.5 MB, fds 51, elu 10\.0%, must-be-zero: none moved$/);
  t.regex(minuteLine('h1', a, sample(60, 100, 50, { tag: 2 }), mustStayZero(a)), /must-be-zero: link_drop_bad_tag=2$/);
});
