import test from 'ava';

import { ApiError } from '../control/errors.ts';
import {
  addressAt,
  addresses,
  cidrOf,
  contains,
  containsCidr,
  formatIpv4,
  indexOf,
  isIpv4,
  maskOf,
  netmaskText,
  overlaps,
  parseCidr,
  parseIpv4,
} from '../control/net/ipv4-cidr.ts';

function rejects(t: import('ava').ExecutionContext, fn: () => unknown, pattern: RegExp, reason = 'parse'): void {
  const err = t.throws(fn, { instanceOf: ApiError });
  t.is(err?.status, 400);
  t.is(err?.reason, reason);
  t.regex(err?.message ?? '', pattern);
}

test('parseIpv4 and formatIpv4 round-trip', (t) => {
  for (const text of ['0.0.0.0', '198.18.4.1', '255.255.255.255', '10.0.0.255', '1.2.3.4']) {
    t.is(formatIpv4(parseIpv4(text)), text);
  }
  t.is(parseIpv4('198.18.4.1'), 0xc6120401);
  t.is(parseIpv4('255.255.255.255'), 0xffffffff);
});

test('parseIpv4 rejects malformed and non-canonical input, naming field and value', (t) => {
  rejects(t, () => parseIpv4('198.18.4'), /cannot parse address: "198\.18\.4" is not a dotted-quad/);
  rejects(t, () => parseIpv4('198.18.4.1.5'), /dotted-quad/);
  rejects(t, () => parseIpv4('198.18.4.256'), /octet 256, which is above 255/);
  rejects(t, () => parseIpv4('198.018.4.1'), /octet "018" with a leading zero; write it as 18/);
  rejects(t, () => parseIpv4('198.18.4.-1'), /not a decimal number/);
  rejects(t, () => parseIpv4('198.18.4.0x1'), /not a decimal number/);
  rejects(t, () => parseIpv4('198.18..1'), /not a decimal number/);
  rejects(t, () => parseIpv4(' 198.18.4.1'), /whitespace/);
  rejects(t, () => parseIpv4('fd00::1'), /IPv6/);
  rejects(t, () => parseIpv4(3232235777, 'value'), /cannot parse value: 3232235777 is not a string/);
  t.false(isIpv4('1.2.3.04'));
  t.true(isIpv4('1.2.3.4'));
});

test('parseCidr returns a canonical block', (t) => {
  const c = parseCidr('198.18.4.0/24');
  t.deepEqual(c, {
    network: 0xc6120400,
    prefixLen: 24,
    mask: 0xffffff00,
    broadcast: 0xc61204ff,
    size: 256,
    text: '198.18.4.0/24',
  });
  t.is(netmaskText(c), '255.255.255.0');
  t.is(parseCidr('0.0.0.0/0').size, 2 ** 32);
  t.is(parseCidr('0.0.0.0/0').broadcast, 0xffffffff);
  t.is(parseCidr('198.18.4.7/32').size, 1);
  t.deepEqual(JSON.parse(JSON.stringify(c)), c);
});

test('parseCidr rejects host bits and suggests the network', (t) => {
  rejects(
    t,
    () => parseCidr('198.18.4.1/24'),
    /cannot parse netblock: "198\.18\.4\.1\/24" has host bits set; the network of 198\.18\.4\.1\/24 is 198\.18\.4\.0\/24/,
    'host-bits',
  );
  rejects(t, () => parseCidr('10.0.0.8/28', 'floating pool'), /cannot parse floating pool: .* is 10\.0\.0\.0\/28/, 'host-bits');
});

test('parseCidr rejects malformed input', (t) => {
  rejects(t, () => parseCidr('198.18.4.0'), /has no prefix length/);
  rejects(t, () => parseCidr('198.18.4.0/'), /prefix length ""/);
  rejects(t, () => parseCidr('198.18.4.0/33'), /prefix length "33"/);
  rejects(t, () => parseCidr('198.18.4.0/024'), /without leading zeros/);
  rejects(t, () => parseCidr('198.18.4.0/24/1'), /prefix length "24\/1"/);
  rejects(t, () => parseCidr('198.18.4.0/255.255.255.0'), /prefix length/);
  rejects(t, () => parseCidr('198.18.4.0/24 '), /prefix length "24 "/);
  rejects(t, () => parseCidr('198.18.004.0/24'), /leading zero/);
  rejects(t, () => parseCidr('198.18.4/24'), /dotted-quad/);
  rejects(t, () => parseCidr('fd00::/64'), /IPv6; only IPv4 netblocks are supported/, 'not-ipv4');
  rejects(t, () => parseCidr(''), /no prefix length/);
  rejects(t, () => parseCidr(null), /cannot parse netblock: null is not a string/);
  rejects(t, () => parseCidr(['10.0.0.0/8']), /is not a string/);
});

test('masks and cidrOf', (t) => {
  t.is(maskOf(0), 0);
  t.is(maskOf(1), 0x80000000);
  t.is(maskOf(29), 0xfffffff8);
  t.is(maskOf(32), 0xffffffff);
  t.throws(() => maskOf(33), { instanceOf: RangeError });
  t.is(cidrOf(parseIpv4('10.1.0.0'), 16).text, '10.1.0.0/16');
  t.throws(() => cidrOf(parseIpv4('10.1.0.1'), 16), { instanceOf: RangeError });
});

test('containment and overlap', (t) => {
  const a = parseCidr('198.18.0.0/15');
  const b = parseCidr('198.19.10.0/24');
  const c = parseCidr('198.20.0.0/24');
  t.true(containsCidr(a, b));
  t.false(containsCidr(b, a));
  t.true(overlaps(a, b));
  t.true(overlaps(b, a));
  t.false(overlaps(a, c));
  t.true(overlaps(a, a));
  // Adjacent blocks do not overlap.
  t.false(overlaps(parseCidr('10.0.0.0/29'), parseCidr('10.0.0.8/29')));
  t.true(contains(b, parseIpv4('198.19.10.255')));
  t.false(contains(b, parseIpv4('198.19.11.0')));
  t.true(overlaps(parseCidr('0.0.0.0/0'), c));
});

test('indexing and iteration', (t) => {
  const c = parseCidr('10.0.0.0/29');
  t.is(formatIpv4(addressAt(c, 0)), '10.0.0.0');
  t.is(formatIpv4(addressAt(c, 1)), '10.0.0.1');
  t.is(formatIpv4(addressAt(c, -1)), '10.0.0.7');
  t.is(formatIpv4(addressAt(c, -2)), '10.0.0.6');
  t.throws(() => addressAt(c, 8), { instanceOf: RangeError });
  t.throws(() => addressAt(c, -9), { instanceOf: RangeError });
  t.is(indexOf(c, parseIpv4('10.0.0.5')), 5);
  t.is(indexOf(c, parseIpv4('10.0.0.8')), -1);
  t.deepEqual([...addresses(c)].map(formatIpv4), [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `10.0.0.${i}`));
  t.deepEqual([...addresses(c, 2, 5)].map(formatIpv4), ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']);
  const top = parseCidr('255.255.255.248/29');
  t.is(formatIpv4(top.broadcast), '255.255.255.255');
  t.is([...addresses(top)].length, 8);
});
