import test from 'ava';
import type { ExecutionContext } from 'ava';

import { ApiError } from '../control/errors.ts';
import { parseCidr } from '../control/net/ipv4-cidr.ts';
import {
  FLOATING_NETWORK_UUID,
  type NetworkCreateContext,
  type NetworkRecord,
  externalView,
  floatingNetworkRecord,
  listNetworks,
  networkAddresses,
  newNetworkRecord,
  parseFloatingPool,
  planDelete,
  resolveNetworkRef,
  validateNetworkCreate,
} from '../control/networks/network.ts';
import type { NetworkState } from '../control/networks/state-machine.ts';

const ctx: NetworkCreateContext = {
  floatingPool: parseCidr('198.19.20.0/24'),
  callerNamespace: 'team-a',
  namespaces: new Set(['team-a', 'team-b', 'system']),
};

function fails(t: ExecutionContext, body: unknown, status: number, pattern: RegExp, c = ctx): ApiError | undefined {
  const err = t.throws(() => validateNetworkCreate(body, c), { instanceOf: ApiError });
  t.is(err?.status, status, err?.message);
  t.regex(err?.message ?? '', pattern);
  t.is(err?.toBody().status, status);
  return err;
}

const UUIDS = [
  '0b6b2f9e-0000-4000-8000-000000000001',
  '0b6b2f9e-0000-4000-8000-000000000002',
  '0b6b2f9e-0000-4000-8000-000000000003',
  '0b6b2f9e-0000-4000-8000-000000000004',
  '0b6b2f9e-0000-4000-8000-000000000005',
];

function net(uuid: string, name: string, namespace: string, state: NetworkState = 'created'): NetworkRecord {
  const spec = validateNetworkCreate({ name, netblock: '198.18.4.0/24' }, { ...ctx, callerNamespace: namespace, namespaces: undefined });
  return { ...newNetworkRecord(spec, { uuid, vxid: 42, now: 1_000 }), state };
}

test('defaults: dhcp and nat on, dns off, not encrypted; the spec is normalised', (t) => {
  const spec = validateNetworkCreate({ name: 'web', netblock: '198.18.4.0/24' }, ctx);
  t.deepEqual(spec, {
    name: 'web',
    namespace: 'team-a',
    netblock: '198.18.4.0/24',
    provideDhcp: true,
    provideNat: true,
    provideDns: false,
    encrypt: false,
    vxlanId: null,
  });
});

test('explicit false is respected (the reference turns it into true)', (t) => {
  const spec = validateNetworkCreate(
    { name: 'quiet', netblock: '198.18.4.0/24', provide_dhcp: false, provide_nat: false, provide_dns: false },
    ctx,
  );
  t.false(spec.provideDhcp);
  t.false(spec.provideNat);
  t.false(spec.provideDns);
  const on = validateNetworkCreate({ name: 'dns', netblock: '198.18.4.0/24', provide_dns: true, provide_nat: null }, ctx);
  t.true(on.provideDns);
  t.true(on.provideNat, 'null means "not given"');
});

test('netblock: parse errors, host bits, IPv6 and missing prefix are 400 "cannot parse netblock"', (t) => {
  fails(t, { name: 'x', netblock: 'banana' }, 400, /^cannot parse netblock: "banana"/);
  fails(t, { name: 'x', netblock: '198.18.4.0' }, 400, /^cannot parse netblock: .*no prefix length/);
  const hostBits = fails(t, { name: 'x', netblock: '198.18.4.1/24' }, 400, /host bits set.*198\.18\.4\.0\/24/);
  t.is(hostBits?.reason, 'host-bits');
  fails(t, { name: 'x', netblock: 'fd00::/64' }, 400, /only IPv4/);
  fails(t, { name: 'x', netblock: 24 }, 400, /^cannot parse netblock: 24 is not a string/);
  fails(t, { name: 'x' }, 400, /netblock is required/);
});

test('netblock size: no prefix, /32 and /30 rejected; /29 accepted', (t) => {
  for (const netblock of ['198.18.4.0/32', '198.18.4.0/30', '198.18.4.0/31']) {
    const err = fails(t, { name: 'x', netblock }, 400, /^network is below minimum size of \/29/);
    t.is(err?.reason, 'size');
  }
  t.is(validateNetworkCreate({ name: 'x', netblock: '198.18.4.8/29' }, ctx).netblock, '198.18.4.8/29');
});

test('netblock may not overlap the floating pool or non-unicast space', (t) => {
  for (const netblock of ['198.19.20.0/24', '198.19.20.128/25', '198.19.0.0/16', '0.0.0.0/0']) {
    const err = fails(t, { name: 'x', netblock }, 400, /overlaps/);
    t.true(err?.reason === 'overlap' || err?.reason === 'unusable');
  }
  fails(t, { name: 'x', netblock: '198.19.0.0/16' }, 400, /overlaps the floating pool 198\.19\.20\.0\/24/);
  fails(t, { name: 'x', netblock: '127.0.0.0/24' }, 400, /not unicast/);
  fails(t, { name: 'x', netblock: '239.1.1.0/24' }, 400, /not unicast/);
  t.notThrows(() => validateNetworkCreate({ name: 'x', netblock: '198.19.21.0/24' }, ctx), 'adjacent is fine');
});

test('body shape: object required, unknown parameters are 400, flags must be booleans', (t) => {
  fails(t, null, 400, /JSON object/);
  fails(t, [], 400, /JSON object/);
  fails(t, { name: 'x', netblock: '198.18.4.0/24', color: 'blue' }, 400, /unknown parameter "color"; accepted: /);
  fails(t, { name: 'x', netblock: '198.18.4.0/24', provide_dhcp: 'false' }, 400, /provide_dhcp must be true or false, got "false"/);
  fails(t, { name: 'x', netblock: '198.18.4.0/24', provide_nat: 0 }, 400, /provide_nat must be true or false/);
});

test('name rules', (t) => {
  fails(t, { netblock: '198.18.4.0/24' }, 400, /name is required/);
  fails(t, { name: '', netblock: '198.18.4.0/24' }, 400, /name is required/);
  fails(t, { name: 'has space', netblock: '198.18.4.0/24' }, 400, /name "has space" is invalid/);
  fails(t, { name: 'a/b', netblock: '198.18.4.0/24' }, 400, /is invalid/);
  fails(t, { name: 'x'.repeat(64), netblock: '198.18.4.0/24' }, 400, /is invalid/);
  fails(t, { name: UUIDS[0], netblock: '198.18.4.0/24' }, 400, /taken for a network UUID/);
  fails(t, { name: 'floating', netblock: '198.18.4.0/24' }, 400, /taken for a network UUID/);
  t.is(validateNetworkCreate({ name: 'Net_1.a-b', netblock: '198.18.4.0/24' }, ctx).name, 'Net_1.a-b');
});

test('namespace: own by default, 401 for another unless system, 404 when unknown', (t) => {
  fails(t, { name: 'x', netblock: '198.18.4.0/24', namespace: 'team-b' }, 401, /may not create networks in namespace "team-b"/);
  const sys = { ...ctx, callerNamespace: 'system' };
  t.is(validateNetworkCreate({ name: 'x', netblock: '198.18.4.0/24', namespace: 'team-b' }, sys).namespace, 'team-b');
  fails(t, { name: 'x', netblock: '198.18.4.0/24', namespace: 'nope' }, 404, /namespace "nope" not found/, sys);
  fails(t, { name: 'x', netblock: '198.18.4.0/24', namespace: 7 }, 400, /namespace must be a non-empty string/);
});

test('vxlan_id: system only, range-checked', (t) => {
  const sys = { ...ctx, callerNamespace: 'system' };
  t.is(validateNetworkCreate({ name: 'x', netblock: '198.18.4.0/24', vxlan_id: 4242 }, sys).vxlanId, 4242);
  fails(t, { name: 'x', netblock: '198.18.4.0/24', vxlan_id: 0 }, 400, /vxlan_id 0 is invalid/, sys);
  fails(t, { name: 'x', netblock: '198.18.4.0/24', vxlan_id: 16777216 }, 400, /1\.\.16777215/, sys);
  fails(t, { name: 'x', netblock: '198.18.4.0/24', vxlan_id: 1.5 }, 400, /is invalid/, sys);
  fails(t, { name: 'x', netblock: '198.18.4.0/24', vxlan_id: 4242 }, 403, /only the system namespace/);
});

test('new record starts initial; external view has exactly the reference fields plus encrypt, and vxid beside vxlan_id', (t) => {
  const spec = validateNetworkCreate({ name: 'web', netblock: '198.18.4.0/24', provide_nat: false }, ctx);
  const record = newNetworkRecord(spec, { uuid: UUIDS[0], vxid: 0x2a, now: 5_000 });
  t.is(record.state, 'initial');
  t.is(record.stateUpdatedAt, 5_000);
  const view = externalView({ ...record, metadata: { owner: 'ops' }, floatingGateway: '198.19.20.7' });
  t.deepEqual(Object.keys(view).sort(), [
    'encrypt',
    'floating_gateway',
    'metadata',
    'name',
    'namespace',
    'netblock',
    'provide_dhcp',
    'provide_dns',
    'provide_nat',
    'state',
    'uuid',
    'version',
    'vxid',
    'vxlan_id',
  ]);
  t.deepEqual(view, {
    uuid: UUIDS[0],
    state: 'initial',
    metadata: { owner: 'ops' },
    version: 1,
    name: 'web',
    namespace: 'team-a',
    netblock: '198.18.4.0/24',
    provide_dhcp: true,
    provide_nat: false,
    provide_dns: false,
    encrypt: false,
    floating_gateway: '198.19.20.7',
    vxid: 42,
    vxlan_id: 42,
  });
});

test('derived addresses: router .1, dhcp start .2', (t) => {
  t.deepEqual(networkAddresses(net(UUIDS[0], 'a', 'team-a')), {
    router: '198.18.4.1',
    dhcpStart: '198.18.4.2',
    netmask: '255.255.255.0',
    broadcast: '198.18.4.255',
    network: '198.18.4.0',
  });
});

test('resolveNetworkRef: uuid, name within namespace, ambiguity, other namespace', (t) => {
  const records = [
    net(UUIDS[0], 'web', 'team-a'),
    net(UUIDS[1], 'db', 'team-a', 'deleted'),
    net(UUIDS[2], 'dup', 'team-a'),
    net(UUIDS[3], 'dup', 'team-a', 'error'),
    net(UUIDS[4], 'web', 'team-b'),
  ];
  t.is(resolveNetworkRef('web', 'team-a', records).uuid, UUIDS[0]);
  t.is(resolveNetworkRef('web', 'team-b', records).uuid, UUIDS[4]);
  t.is(resolveNetworkRef(UUIDS[1], 'team-a', records).state, 'deleted', 'a UUID resolves even when deleted');
  const deletedByName = t.throws(() => resolveNetworkRef('db', 'team-a', records), { instanceOf: ApiError });
  t.is(deletedByName?.status, 404, 'a name matches only active networks');
  const ambiguous = t.throws(() => resolveNetworkRef('dup', 'team-a', records), { instanceOf: ApiError });
  t.is(ambiguous?.status, 400);
  t.regex(ambiguous?.message ?? '', /^multiple networks have the name "dup"/);
  const foreign = t.throws(() => resolveNetworkRef(UUIDS[4], 'team-a', records), { instanceOf: ApiError });
  t.is(foreign?.status, 404);
  t.regex(foreign?.message ?? '', /^network not found/);
  t.is(t.throws(() => resolveNetworkRef('nope', 'team-a', records))?.message, 'network not found: "nope"');
  // system sees every namespace, so the name "web" is now ambiguous.
  t.is(t.throws(() => resolveNetworkRef('web', 'system', records), { instanceOf: ApiError })?.status, 400);
  t.is(resolveNetworkRef(UUIDS[4], 'system', records).namespace, 'team-b');
});

test('listNetworks: own namespace, system sees all, deleted only with all, floating hidden', (t) => {
  const pool = parseFloatingPool('198.19.20.0/24');
  const records = [
    net(UUIDS[0], 'web', 'team-a'),
    net(UUIDS[1], 'db', 'team-a', 'deleted'),
    net(UUIDS[4], 'web', 'team-b'),
    floatingNetworkRecord(pool, 1),
  ];
  t.deepEqual(listNetworks(records, 'team-a').map((r) => r.uuid), [UUIDS[0]]);
  t.deepEqual(listNetworks(records, 'team-a', true).map((r) => r.uuid), [UUIDS[0], UUIDS[1]]);
  t.deepEqual(listNetworks(records, 'system').map((r) => r.uuid), [UUIDS[0], UUIDS[4]]);
});

test('floating pseudo-network and pool validation', (t) => {
  const pool = parseFloatingPool('198.19.20.0/24');
  const floating = floatingNetworkRecord(pool, 1);
  t.is(floating.uuid, FLOATING_NETWORK_UUID);
  t.is(floating.vxid, 0);
  t.is(floating.namespace, null);
  t.false(floating.provideDhcp || floating.provideNat || floating.provideDns);
  t.is(t.throws(() => parseFloatingPool('198.19.20.1/24'), { instanceOf: ApiError })?.reason, 'host-bits');
  t.regex(t.throws(() => parseFloatingPool('198.19.20.0/30'))?.message ?? '', /below minimum size of \/29/);
  const err = t.throws(() => planDelete(floating, 0), { instanceOf: ApiError });
  t.is(err?.status, 403);
});

test('planDelete follows the state and the interfaces left', (t) => {
  t.deepEqual(planDelete(net(UUIDS[0], 'a', 'team-a', 'created'), 2), { action: 'delete-wait' });
  t.deepEqual(planDelete(net(UUIDS[0], 'a', 'team-a', 'created'), 0), { action: 'destroy' });
  t.deepEqual(planDelete(net(UUIDS[0], 'a', 'team-a', 'delete-wait'), 1), { action: 'delete-wait' });
  t.deepEqual(planDelete(net(UUIDS[0], 'a', 'team-a', 'delete-wait'), 0), { action: 'destroy' });
  t.deepEqual(planDelete(net(UUIDS[0], 'a', 'team-a', 'initial'), 0), { action: 'destroy' });
  t.deepEqual(planDelete(net(UUIDS[0], 'a', 'team-a', 'initial'), 1), { action: 'delete-wait' }, 'interfaces may attach before created');
  t.deepEqual(planDelete(net(UUIDS[0], 'a', 'team-a', 'error'), 0), { action: 'destroy' });
  t.deepEqual(planDelete(net(UUIDS[0], 'a', 'team-a', 'deleted'), 0), { action: 'none' });
});
