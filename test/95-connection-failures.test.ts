// Real failures end in ERROR with a reason, instead of WAITING forever (issue 14, Nalej's contract): a
// connection whose port cannot be made, whose link handshakes keep failing with a live peer host, or whose
// instance is never placed within the time limit; a network whose floating gateway cannot be allocated.
// First the pure rules (connections/realise.ts nextStatus, reconcile/connection-reports.ts desiredReports),
// then each failure end to end on real daemons, with the time limits of the config made short.
import test from 'ava';
import { rmSync } from 'node:fs';
import { nextStatus, endpointReportKey } from '../control/connections/realise.ts';
import { desiredReports } from '../control/reconcile/connection-reports.ts';
import type { ConnectionRecord } from '../control/connections/model.ts';
import type { DesiredState } from '../control/reconcile/plan.ts';
import { TestNet } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { apiCall, cliJson, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { until } from './helpers/until.ts';
import { addOutside } from './helpers/nat-net.ts';

const T0 = 1_000_000;
const record = (over: Partial<ConnectionRecord> = {}): ConnectionRecord => ({
  connection_id: 'c1', namespace: 'system', target_namespace: 'system',
  source_instance_id: 'src', source_instance_name: 'web', outbound_name: 'db', outbound_required: false,
  target_instance_id: 'dst', target_instance_name: 'pg', inbound_name: 'in', inbound_port: 5432, inbound_protocol: 'tcp',
  status: 'WAITING', reason: null, link: { outbound_address: '172.16.0.1', inbound_address: '172.16.0.2', prefix_len: 30 },
  vni: 70000, created_at: T0, status_updated_at: T0, version: 1, ...over,
});
const hostOf = (id: string) => (id === 'src' ? 'h1' : 'h2');

test('nextStatus: a side that reports an error fails the connection with its host and reason', (t) => {
  const step = nextStatus(record(), {
    outbound: { host: 'h1', attached: true, link_up: false },
    inbound: { host: 'h2', attached: false, link_up: false, error: 'its port could not be made: EEXIST' },
  }, hostOf);
  t.deepEqual(step, { type: 'fail', reason: 'inbound side on host h2: its port could not be made: EEXIST' });
  // ESTABLISHED ones fail the same way; ERROR ones are no longer realisable: nothing more to decide.
  t.is(nextStatus(record({ status: 'ESTABLISHED', established_at: T0 }), { outbound: { host: 'h1', attached: true, link_up: false, error: 'x' } }, hostOf).type, 'fail');
  t.is(nextStatus(record({ status: 'ERROR' }), { outbound: { host: 'h1', attached: true, link_up: false, error: 'x' } }, hostOf).type, 'none');
});

test('nextStatus: never established and waiting past the placement limit with a side not attached is ERROR; not before, not once established', (t) => {
  const reports = { outbound: { host: 'h1', attached: true, link_up: false } };
  const limits = (now: number) => ({ now, placementMs: 60_000 });
  t.is(nextStatus(record(), reports, hostOf, limits(T0 + 59_000)).type, 'wait');
  t.deepEqual(nextStatus(record(), reports, hostOf, limits(T0 + 61_000)), {
    type: 'fail', reason: 'inbound instance pg not placed and attached on a live host within 60 s',
  });
  // Once established, a side that goes away is WAITING again for as long as it takes (a host restart).
  t.is(nextStatus(record({ established_at: T0 }), reports, hostOf, limits(T0 + 3_600_000)).type, 'wait');
  // Both attached, only the link missing: not a placement failure (the handshake rule covers it).
  const attached = { outbound: { host: 'h1', attached: true, link_up: false }, inbound: { host: 'h2', attached: true, link_up: false } };
  t.is(nextStatus(record(), attached, hostOf, limits(T0 + 3_600_000)).type, 'wait');
  // 0 turns the limit off.
  t.is(nextStatus(record(), reports, hostOf, { now: T0 + 3_600_000, placementMs: 0 }).type, 'wait');
});

test('desiredReports: a port that could not be made, and a link down past the limit with the peer host live, are reported errors', (t) => {
  const c = record();
  const state = {
    networks: new Map(), interfaces: new Map(),
    instances: new Map([['src', { uuid: 'src', host: 'h1' }], ['dst', { uuid: 'dst', host: 'h2' }]]),
    hosts: new Map([['h1', { name: 'h1', underlay_address: '198.18.0.1' }], ['h2', { name: 'h2', underlay_address: '198.18.0.2' }]]),
    connections: new Map([['c1', c]]),
  } as unknown as DesiredState;
  const key = endpointReportKey('c1', 'outbound');
  const noPort = desiredReports('h1', state, () => false, new Set(), { portError: () => 'namespace /run/netns/x does not exist' });
  t.is(noPort.get(key)?.error, 'its port could not be made: namespace /run/netns/x does not exist');
  const linkDownSince = new Map<string, number>();
  const watch = (now: number) => ({ handshakeMs: 10_000, now, linkDownSince });
  t.is(desiredReports('h1', state, () => true, new Set(), watch(T0)).get(key)?.error, undefined);
  t.is(desiredReports('h1', state, () => true, new Set(), watch(T0 + 9_000)).get(key)?.error, undefined);
  t.regex(desiredReports('h1', state, () => true, new Set(), watch(T0 + 11_000)).get(key)?.error ?? '', /no link session with host h2 \(198\.18\.0\.2\) for more than 10 s/);
  // A session comes: the clock starts again.
  t.is(desiredReports('h1', state, () => true, new Set(['198.18.0.2']), watch(T0 + 12_000)).get(key)?.error, undefined);
  t.is(linkDownSince.size, 0);
  // The peer host is not live (no record): its absence is a wait, not a failing handshake.
  const gone = { ...state, hosts: new Map([['h1', { name: 'h1', underlay_address: '198.18.0.1' }]]) } as unknown as DesiredState;
  t.is(desiredReports('h1', gone, () => true, new Set(), watch(T0 + 60_000)).get(key)?.error, undefined);
});

test('on real daemons: an unmakeable port, failing handshakes and an unplaced instance each end a connection in ERROR with the reason', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  // h2 drops every link datagram from the start: the hosts are live in the store, their handshakes fail.
  await runIn(h2.ns, 'iptables', ['-I', 'INPUT', '-p', 'udp', '--dport', '51830', '-j', 'DROP']);
  const cp = await controlPlaneConfig(net, { connections: { handshakeTimeoutSeconds: 4, placementTimeoutSeconds: 6 } });
  await net.startAppnetd(h1, cp);
  await net.startAppnetd(h2, cp);
  const instance = async (name: string, host: string, ...args: string[]) => {
    const ns = await net.addInstance(name);
    t.teardown(() => rmSync(`/etc/netns/${ns.ns}`, { recursive: true, force: true }));
    return cliJson(h1.ns, 'instance', 'create', name, '--host', host, '--netns', ns.ns, ...args);
  };
  const errorOf = (id: string) => until(`connection ${id} in ERROR`, async () => {
    const c = (await cliJson(h1.ns, 'list')).find((x: any) => x.connection_id === id);
    return c?.status === 'ERROR' ? c : undefined;
  }, 60);

  // 1. The inbound's namespace does not exist (a path the runtime never made): its port cannot be made.
  const ghost = await cliJson(h1.ns, 'instance', 'create', 'ghost', '--host', 'h1', '--netns', `/run/netns/appnet-missing-${process.pid}`, '--inbound', 'in:80');
  const web1 = await instance('web1', 'h1', '--outbound', 'db');
  const c1 = await cliJson(h1.ns, 'add', web1.uuid, 'db', ghost.uuid, 'in');
  const e1 = await errorOf(c1.connection_id);
  t.regex(e1.reason, /^inbound side on host h1: its port could not be made: .*appnet-missing/);

  // 2. Both sides attached on two live hosts, no handshake gets through: ERROR after the 4 s limit.
  const pg = await instance('pg', 'h2', '--inbound', 'in:5432');
  const web2 = await instance('web2', 'h1', '--outbound', 'db');
  const c2 = await cliJson(h1.ns, 'add', web2.uuid, 'db', pg.uuid, 'in');
  const e2 = await errorOf(c2.connection_id);
  t.regex(e2.reason, /side on host h[12]: no link session with host h[12] \(198\.18\.\d+\.\d+\) for more than 4 s: its handshakes keep failing/);

  // 3. The inbound's instance is on a host that never comes: ERROR after the 6 s placement limit.
  const far = await cliJson(h1.ns, 'instance', 'create', 'far', '--host', 'h9', '--netns', 'appnet-far', '--inbound', 'in:80');
  const web3 = await instance('web3', 'h1', '--outbound', 'db');
  const c3 = await cliJson(h1.ns, 'add', web3.uuid, 'db', far.uuid, 'in');
  const e3 = await errorOf(c3.connection_id);
  t.is(e3.reason, 'inbound instance far not placed and attached on a live host within 6 s');

  // Each failure is an event of its connection.
  const events = (await apiCall(h1.ns, 'GET', `/connections/${c3.connection_id}/events`, TEST_TOKEN)).body as any[];
  t.true(events.some((e: any) => /status changed to ERROR: inbound instance far/.test(e.message)), JSON.stringify(events));
});

test('on a real daemon: a NAT network whose floating gateway cannot be allocated goes to error, saying why', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const [h1] = net.hosts;
  await addOutside(net, h1);
  // The smallest pool a daemon takes, a /29: fewer addresses than the networks below.
  await net.startAppnetd(h1, await controlPlaneConfig(net, { uplink: { device: 'anup0' }, floatingPool: '198.19.0.0/29' }));
  const uuids: string[] = [];
  for (let i = 0; i < 9; i++) uuids.push((await cliJson(h1.ns, 'network', 'create', `nat${i}`, `198.18.${140 + i}.0/24`, '--no-dhcp')).uuid);
  const settled = await until('every network has a gateway or is in error', async () => {
    const shown = await Promise.all(uuids.map((u) => cliJson(h1.ns, 'network', 'show', u)));
    return shown.every((n: any) => n.floating_gateway || n.state === 'error') ? shown : undefined;
  }, 60);
  const failed = settled.filter((n: any) => n.state === 'error');
  t.true(failed.length >= 2, JSON.stringify(settled));
  t.true(settled.some((n: any) => n.floating_gateway), JSON.stringify(settled));
  for (const n of failed) t.regex(n.error, /^its floating gateway cannot be allocated: /);
  const events = await cliJson(h1.ns, 'network', 'events', failed[0].uuid);
  t.true(events.some((e: any) => /state changed to error: its floating gateway cannot be allocated/.test(e.message)), JSON.stringify(events));
});
