import test from 'ava';
import type { ExecutionContext } from 'ava';
import {
  WireError, parseIpv4Address, formatIpv4Address, ipv4ToBytes, bytesToIpv4,
  parseMac, formatMac, isBroadcastMac, isMulticastMac,
} from '../dataplane/wire/index.ts';
import { xorshift32 } from './helpers/random.ts';
import { throwsWire } from './helpers/wire-assert.ts';

test('parseIpv4Address accepts dotted quads', (t) => {
  t.is(parseIpv4Address('0.0.0.0'), 0);
  t.is(parseIpv4Address('255.255.255.255'), 0xffffffff);
  t.is(parseIpv4Address('198.18.0.1'), 0xc6120001);
  t.is(parseIpv4Address('10.0.200.7'), 0x0a00c807);
  t.is(parseIpv4Address('192.168.0.199'), 0xc0a800c7);
});

test('parseIpv4Address rejects malformed text with field and character offset', (t) => {
  const cases: Array<[string, string, number]> = [
    ['1.2.3', 'separator', 5],
    ['01.2.3.4', 'octet 1', 0],
    ['1.2.3.00', 'octet 4', 6],
    ['1.2.3.256', 'octet 4', 6],
    ['1.2.3.4444', 'octet 4', 6],
    ['1.300.3.4', 'octet 2', 2],
    [' 1.2.3.4', 'octet 1', 0],
    ['1.2.3.4 ', 'trailing', 7],
    ['1. 2.3.4', 'octet 2', 2],
    ['1.2.3.4.5', 'trailing', 7],
    ['1..3.4', 'octet 2', 2],
    ['', 'octet 1', 0],
    ['1.2.3.-4', 'octet 4', 6],
    ['+1.2.3.4', 'octet 1', 0],
    ['1.2.3.0x1', 'trailing', 7],
    ['1,2,3,4', 'separator', 1],
    ['1.2.3.4\n', 'trailing', 7],
  ];
  for (const [text, field, offset] of cases) {
    throwsWire(t, () => parseIpv4Address(text), 'ipv4-address', field, offset);
  }
  throwsWire(t, () => parseIpv4Address(42 as unknown as string), 'ipv4-address', 'text', 0);
});

test('formatIpv4Address and byte conversions', (t) => {
  t.is(formatIpv4Address(0xc6120001), '198.18.0.1');
  t.is(formatIpv4Address(0), '0.0.0.0');
  t.is(formatIpv4Address(0xffffffff), '255.255.255.255');
  for (const bad of [-1, 2 ** 32, 1.5, Number.NaN]) {
    t.throws(() => formatIpv4Address(bad), { instanceOf: RangeError });
  }
  t.deepEqual(ipv4ToBytes(0xc0a800c7), Uint8Array.of(192, 168, 0, 199));
  const buf = new Uint8Array(8);
  t.is(ipv4ToBytes(0x01020304, buf, 3), buf);
  t.deepEqual(buf, Uint8Array.of(0, 0, 0, 1, 2, 3, 4, 0));
  t.is(bytesToIpv4(buf, 3), 0x01020304);
  t.is(bytesToIpv4(Uint8Array.of(255, 255, 255, 254)), 0xfffffffe);
  t.throws(() => ipv4ToBytes(-5), { instanceOf: RangeError });
});

test('parseMac and formatMac', (t) => {
  t.deepEqual(parseMac('aa:bb:cc:dd:ee:ff'), Uint8Array.of(0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff));
  t.deepEqual(parseMac('02:00:C6:12:0a:Bf'), Uint8Array.of(0x02, 0x00, 0xc6, 0x12, 0x0a, 0xbf));
  t.is(formatMac(Uint8Array.of(0x02, 0x00, 0xc6, 0x12, 0x0a, 0xbf)), '02:00:c6:12:0a:bf');
  t.is(formatMac(Uint8Array.of(9, 9, 1, 2, 3, 4, 5, 6), 2), '01:02:03:04:05:06');
  t.throws(() => formatMac(new Uint8Array(5)), { instanceOf: RangeError });
});

test('parseMac rejects malformed text with field and character offset', (t) => {
  const cases: Array<[string, string, number]> = [
    ['aa:bb:cc:dd:ee', 'separator', 14],
    ['aa:bb:cc:dd:ee:', 'byte 6', 15],
    ['aa-bb-cc-dd-ee-ff', 'separator', 2],
    ['aa:bb:cc:dd:ee:ff:00', 'trailing', 17],
    ['aa:bb:cc:dd:ee:ff ', 'trailing', 17],
    ['a:bb:cc:dd:ee:ff', 'byte 1', 0],
    ['gg:bb:cc:dd:ee:ff', 'byte 1', 0],
    ['aa:bb:cc:dd:ee:fg', 'byte 6', 15],
    ['aabb.ccdd.eeff', 'separator', 2],
    ['', 'byte 1', 0],
  ];
  for (const [text, field, offset] of cases) {
    throwsWire(t, () => parseMac(text), 'mac-address', field, offset);
  }
});

test('broadcast and multicast MACs', (t) => {
  t.true(isBroadcastMac(parseMac('ff:ff:ff:ff:ff:ff')));
  t.false(isBroadcastMac(parseMac('ff:ff:ff:ff:ff:fe')));
  t.true(isMulticastMac(parseMac('ff:ff:ff:ff:ff:ff')));
  t.true(isMulticastMac(parseMac('01:00:5e:00:00:fb')));
  t.true(isMulticastMac(parseMac('33:33:00:00:00:01')));
  t.false(isMulticastMac(parseMac('02:00:c6:12:00:01')));
  const frame = Uint8Array.of(0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
  t.true(isBroadcastMac(frame, 2));
  t.false(isBroadcastMac(frame, 0));
});

test('property: format/parse round trips (seeded)', (t) => {
  const rnd = xorshift32(0x5eed0010);
  for (let i = 0; i < 2000; i++) {
    const addr = rnd();
    const text = formatIpv4Address(addr);
    t.is(parseIpv4Address(text), addr);
    t.is(bytesToIpv4(ipv4ToBytes(addr)), addr);
    const mac = Uint8Array.of(rnd() & 0xff, rnd() & 0xff, rnd() & 0xff, rnd() & 0xff, rnd() & 0xff, rnd() & 0xff);
    const macText = formatMac(mac);
    t.regex(macText, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    t.deepEqual(parseMac(macText), mac);
    t.deepEqual(parseMac(macText.toUpperCase()), mac);
  }
});
