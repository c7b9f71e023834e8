// Realising connections, without devices: the status decided from endpoint reports, the applier
// choice, the planner's connection ports and VNIs, the endpoint reports a host writes, and the
// instances' hosts files.
import test from 'ava';
import { mkdtempSync, readFileSync, existsSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { InstanceRecord } from '../control/instances/instance.ts';
import type { ConnectionRecord } from '../control/connections/model.ts';
import type { HostRecord } from '../control/repo/hosts.ts';
import { connectionMac, connectionPortName, nextStatus, statusApplier, type EndpointReport } from '../control/connections/realise.ts';
import { outboundHostname } from '../control/connections/env.ts';
import { desiredState, planHost } from '../control/reconcile/plan.ts';
import { desiredReports } from '../control/reconcile/connection-reports.ts';
import { NetnsHosts, desiredHostsFiles, localNetns } from '../control/reconcile/netns-hosts.ts';
import { parseDaemonConfig } from '../control/daemon/config.ts';
import { DEFAULT_LINK_POOL } from '../control/connections/link-pool.ts';

const SRC = '1234abcd-0000-4000-8000-000000000001';
const SINK = '5678ef01-0000-4000-8000-000000000002';
const CID = '9abc0123-0000-4000-8000-00000000000c';

function instance(uuid: string, name: string, host: string, extra: Partial<InstanceRecord> = {}): InstanceRecord {
  return { uuid, name, namespace: 'alpha', host, netns: `ns-${name}`, interfaces: [], metadata: {}, createdAt: 1, version: 1, ...extra };
}
function host(name: string, address: string): HostRecord {
  return { name, underlay_address: address, public_key: `${name}-key`, machine: 'm', pid: 1, started_at: 'now' };
}
function connection(extra: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return {
    connection_id: CID, namespace: 'alpha', target_namespace: 'alpha',
    source_instance_id: SRC, source_instance_name: 'src', outbound_name: 'db', outbound_required: false,
    target_instance_id: SINK, target_instance_name: 'sink', inbound_name: 'in', inbound_port: 5201, inbound_protocol: 'tcp',
    status: 'WAITING', reason: null, link: { outbound_address: '198.19.128.0', inbound_address: '198.19.128.1', prefix_len: 31 }, vni: 4242,
    created_at: 1, status_updated_at: 1, version: 1, ...extra,
  };
}
const HOSTS = [host('h1', '198.18.0.11'), host('h2', '198.18.0.12')];
const twoHosts = (c: ConnectionRecord) => desiredState({
  networks: [], interfaces: [], hosts: HOSTS, connections: [c],
  instances: [instance(SRC, 'src', 'h1', { outbounds: [{ name: 'db', required: false }] }), instance(SINK, 'sink', 'h2', { inbounds: [{ name: 'in', port: 5201, protocol: 'tcp' }] })],
});
const hostOf = (id: string) => (id === SRC ? 'h1' : id === SINK ? 'h2' : undefined);
const up = (h: string): EndpointReport => ({ host: h, attached: true, link_up: true });

test('status from reports: ESTABLISHED needs both sides attached and linked; WAITING names what is missing', (t) => {
  t.deepEqual(nextStatus(connection(), { outbound: up('h1'), inbound: up('h2') }, hostOf), { type: 'establish' });
  t.deepEqual(nextStatus(connection({ status: 'ESTABLISHED' }), { outbound: up('h1'), inbound: up('h2') }, hostOf), { type: 'none' });
  t.deepEqual(nextStatus(connection({ status: 'ESTABLISHED' }), { outbound: up('h1') }, hostOf),
    { type: 'wait', reason: 'inbound side on host h2 is not attached' });
  t.deepEqual(nextStatus(connection(), {}, hostOf),
    { type: 'wait', reason: 'outbound side on host h1 is not attached; inbound side on host h2 is not attached' });
  t.deepEqual(nextStatus(connection(), { outbound: { host: 'h1', attached: true, link_up: false }, inbound: up('h2') }, hostOf),
    { type: 'wait', reason: 'outbound side on host h1 has no link session with host h2' });
  t.deepEqual(nextStatus(connection(), { outbound: up('h1'), inbound: { host: 'h2', attached: false, link_up: false } }, hostOf),
    { type: 'wait', reason: 'inbound side on host h2 is not attached' });
  // The same reason again is no write; a gone instance is named.
  t.deepEqual(nextStatus(connection({ reason: 'inbound side on host h2 is not attached' }), { outbound: up('h1') }, hostOf), { type: 'none' });
  t.deepEqual(nextStatus(connection({ target_instance_id: 'gone' }), { outbound: up('h1') }, hostOf),
    { type: 'wait', reason: 'inbound side (instance gone is not placed) is not attached' });
  // TERMINATED waits for every report to go; ERROR is left alone.
  t.deepEqual(nextStatus(connection({ status: 'TERMINATED' }), { inbound: up('h2') }, hostOf), { type: 'none' });
  t.deepEqual(nextStatus(connection({ status: 'TERMINATED' }), {}, hostOf), { type: 'finish' });
  t.deepEqual(nextStatus(connection({ status: 'ERROR', reason: 'x' }), {}, hostOf), { type: 'none' });
});

test('the status applier is the first live host by name, whatever the order', (t) => {
  t.is(statusApplier(['h3', 'h10', 'h2']), 'h10');
  t.is(statusApplier(new Set(['b', 'a'])), 'a');
  t.is(statusApplier([]), undefined);
});

test('plan: each endpoint host gets its filtered side on the encrypted VNI, flooding to the other host, which becomes active', (t) => {
  const c = connection();
  const p1 = planHost('h1', twoHosts(c), 1500);
  const p2 = planHost('h2', twoHosts(c), 1500);
  t.deepEqual(p1.ports, [{
    name: connectionPortName(CID, 'outbound'), iface: `${CID}/outbound`, network: `connection/${CID}`, vni: 4242,
    mac: connectionMac(CID, 'outbound'), netns: 'ns-src', cidr: '198.19.128.0/31', mtu: 1500 - 50 - 32,
    filter: { localAddress: '198.19.128.0', peerAddress: '198.19.128.1', protocol: 'tcp', port: 5201, side: 'outbound' },
    connection: { id: CID, side: 'outbound' },
  }]);
  t.is(p1.ports[0].name, 'ao9abc0123');
  t.is(p2.ports[0].name, 'ai9abc0123');
  t.is(p2.ports[0].cidr, '198.19.128.1/31');
  t.deepEqual(p2.ports[0].filter, { localAddress: '198.19.128.1', peerAddress: '198.19.128.0', protocol: 'tcp', port: 5201, side: 'inbound' });
  t.regex(p1.ports[0].mac, /^02(:[0-9a-f]{2}){5}$/);
  t.not(p1.ports[0].mac, p2.ports[0].mac);
  t.deepEqual(p1.vnis, [{ vni: 4242, network: `connection/${CID}`, mtu: 1418, encrypted: true, flood: ['198.18.0.12'], connection: CID }]);
  t.deepEqual(p2.vnis[0].flood, ['198.18.0.11']);
  t.deepEqual(p1.linkPeers.map((l) => [l.host, l.active]), [['h2', true]]);
  t.deepEqual(p2.linkPeers.map((l) => [l.host, l.active]), [['h1', true]]);
});

test('plan: both ends on one host switch locally (no flood); TERMINATED, ERROR and address-less connections get nothing', (t) => {
  const same = desiredState({
    networks: [], interfaces: [], hosts: HOSTS, connections: [connection()],
    instances: [instance(SRC, 'src', 'h1'), instance(SINK, 'sink', 'h1')],
  });
  const p = planHost('h1', same, 1500);
  t.deepEqual(p.ports.map((x) => [x.name, x.netns]), [['ai9abc0123', 'ns-sink'], ['ao9abc0123', 'ns-src']]);
  t.deepEqual(p.vnis.map((v) => [v.vni, v.flood]), [[4242, []]]);
  t.deepEqual(p.linkPeers.map((l) => l.active), [false]);
  t.deepEqual(planHost('h2', same, 1500).ports, []);
  for (const extra of [{ status: 'TERMINATED' as const }, { status: 'ERROR' as const }, { link: null }, { vni: null }]) {
    const plan = planHost('h1', twoHosts(connection(extra)), 1500);
    t.deepEqual([plan.ports, plan.vnis, plan.linkPeers.map((l) => l.active)], [[], [], [false]], JSON.stringify(extra));
  }
});

test('endpoint reports: attached is the port, link_up needs a session with the other host (or the same host)', (t) => {
  const c = connection();
  const none = new Set<string>();
  t.deepEqual([...desiredReports('h1', twoHosts(c), () => false, none)], [[`/appnet/connection-endpoints/${CID}/outbound`, { host: 'h1', attached: false, link_up: false }]]);
  t.deepEqual([...desiredReports('h1', twoHosts(c), () => true, none).values()], [{ host: 'h1', attached: true, link_up: false }]);
  t.deepEqual([...desiredReports('h2', twoHosts(c), () => true, new Set(['198.18.0.11'])).entries()],
    [[`/appnet/connection-endpoints/${CID}/inbound`, { host: 'h2', attached: true, link_up: true }]]);
  t.is(desiredReports('h3', twoHosts(c), () => true, none).size, 0);
  t.is(desiredReports('h1', twoHosts(connection({ status: 'TERMINATED' })), () => true, none).size, 0);
  const same = desiredState({ networks: [], interfaces: [], hosts: HOSTS, connections: [c], instances: [instance(SRC, 'src', 'h1'), instance(SINK, 'sink', 'h1')] });
  t.deepEqual([...desiredReports('h1', same, () => true, none).values()], [up('h1'), up('h1')]);
});

test('hosts files: the source instance resolves its outbound name to the inbound address; files come and go with the connection', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'appnet-etc-netns-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const files = desiredHostsFiles('h1', twoHosts(connection()));
  t.deepEqual([...files.keys()], ['ns-src']);
  const text = files.get('ns-src')!;
  t.true(text.includes(`\n198.19.128.1 ${outboundHostname(SRC, 'db')}\n`), text);
  t.true(text.includes('127.0.0.1\tlocalhost'), text);
  t.is(desiredHostsFiles('h2', twoHosts(connection())).size, 0);
  t.is(desiredHostsFiles('h1', twoHosts(connection({ status: 'TERMINATED' }))).size, 0);

  const log = pino({ level: 'silent' });
  // Another daemon's file and an operator's are never touched.
  mkdirSync(path.join(root, 'other'));
  writeFileSync(path.join(root, 'other', 'hosts'), '# written by appnetd on host h2: x\n');
  const hosts = new NetnsHosts({ host: 'h1', log, root });
  await hosts.apply(files);
  t.is(readFileSync(path.join(root, 'ns-src', 'hosts'), 'utf8'), text);
  // A restarted daemon adopts its files in its own instances' namespaces and removes the ones no longer
  // wanted; a file with its host name in a namespace that is not one of its instances' is another store's.
  mkdirSync(path.join(root, 'elsewhere'));
  writeFileSync(path.join(root, 'elsewhere', 'hosts'), '# written by appnetd on host h1: x\n');
  const restarted = new NetnsHosts({ host: 'h1', log, root });
  await restarted.apply(new Map(), localNetns('h1', twoHosts(connection())));
  t.false(existsSync(path.join(root, 'ns-src')));
  t.true(existsSync(path.join(root, 'other', 'hosts')));
  t.true(existsSync(path.join(root, 'elsewhere', 'hosts')));
  await restarted.apply(files);
  await restarted.close();
  t.false(existsSync(path.join(root, 'ns-src')));
});

test('daemon config: linkPool defaults to the shared default, and a bad one is refused naming the field', (t) => {
  const base = { host: 'h1', underlay: { address: '198.18.0.11' } };
  t.is(parseDaemonConfig(base).linkPool, DEFAULT_LINK_POOL);
  t.is(parseDaemonConfig({ ...base, linkPool: '198.18.64.0/18' }).linkPool, '198.18.64.0/18');
  t.throws(() => parseDaemonConfig({ ...base, linkPool: '198.18.0.1/32' }), { message: /^config: linkPool: .*prefix length \/8\.\.\/31/ });
});
