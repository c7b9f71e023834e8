// The NAT policy (control/services/nat-policy.ts): who the network node is and what each host installs.
import test from 'ava';
import type { HostRecord } from '../control/repo/hosts.ts';
import type { InterfaceRecord } from '../control/instances/interface.ts';
import type { NetworkRecord } from '../control/networks/network.ts';
import { natNode, planNat } from '../control/services/nat-policy.ts';
import { parseDaemonConfig } from '../control/daemon/config.ts';

const host = (name: string, uplink: boolean, address: string): HostRecord => ({
  name, underlay_address: address, machine: 'm', pid: 1, started_at: '', ...(uplink ? { nat_uplink: true } : {}),
});

const network = (uuid: string, vxid: number, over: Partial<NetworkRecord> = {}): NetworkRecord => ({
  uuid, name: uuid, namespace: 'ns', netblock: '198.18.10.0/24', vxid, provideDhcp: false, provideNat: true, provideDns: false,
  state: 'created', stateUpdatedAt: 0, error: null, metadata: {}, floatingGateway: null, createdAt: 0, version: 1, ...over,
});

const iface = (uuid: string, net: string, ipv4: string | null, over: Partial<InterfaceRecord> = {}): InterfaceRecord => ({
  uuid, network_uuid: net, instance_uuid: `i-${uuid}`, namespace: 'ns', macaddr: '02:00:00:AA:BB:01', ipv4, order: 0,
  state: 'created', stateUpdatedAt: 0, metadata: {}, floating: null, createdAt: 0, version: 1, ...over,
});

test('the network node is the live host with an uplink that sorts first by name; none without an uplink', (t) => {
  t.is(natNode([host('h3', true, '198.18.0.3'), host('h1', false, '198.18.0.1'), host('h2', true, '198.18.0.2')])?.name, 'h2');
  t.is(natNode([host('h1', false, '198.18.0.1')]), null);
  const plan = planNat({ host: 'h1', hosts: [host('h1', false, '198.18.0.1')], networks: [network('n', 5)], interfaces: [] });
  t.like(plan, { natNode: null, isNatNode: false });
  t.deepEqual([plan.gateways, plan.remoteGateways, plan.needGateway], [[], [], []]);
});

test('the network node installs gateways, SNAT to the floating gateway, neighbours, floats and routes; asks for missing gateways', (t) => {
  const hosts = [host('h1', true, '198.18.0.1'), host('h2', false, '198.18.0.2')];
  const networks = [
    network('a', 100, { floatingGateway: '198.19.0.7' }),
    network('b', 200, { netblock: '198.18.10.0/24' }),  // same netblock, no gateway yet
    network('c', 300, { provideNat: false }),
    network('d', 400, { state: 'deleted', floatingGateway: '198.19.0.9' }),
  ];
  const interfaces = [
    iface('x', 'a', '198.18.10.5', { floating: '198.19.0.20' }),
    iface('y', 'a', null),
    iface('z', 'a', '198.18.10.6', { state: 'deleted' }),
    iface('w', 'c', '198.18.10.7'),
  ];
  const plan = planNat({ host: 'h1', hosts, networks, interfaces, routed: new Map([['a', ['198.19.0.30']]]) });
  t.true(plan.isNatNode);
  t.deepEqual(plan.gateways.map((g) => [g.vni, g.ip, g.mac]), [[100, '198.18.10.1', '02:61:6e:00:00:64'], [200, '198.18.10.1', '02:61:6e:00:00:c8']]);
  t.deepEqual(plan.snat, [{ vni: 100, network: 'a', insideNet: 0xc6120a00, prefix: 24, external: 0xc6130007 }]);
  t.deepEqual(plan.needGateway, ['b']);
  t.deepEqual(plan.neighbours, [{ vni: 100, ip: '198.18.10.5', mac: '02:00:00:aa:bb:01' }]);
  t.deepEqual(plan.floats, [{ vni: 100, interface: 'x', inside: 0xc6120a05, external: 0xc6130014 }]);
  t.deepEqual(plan.routes, [{ vni: 100, network: 'a', address: '198.19.0.30' }]);
  t.deepEqual(plan.remoteGateways, []);
});

test('other hosts only point each NAT network gateway MAC at the network node', (t) => {
  const hosts = [host('h1', true, '198.18.0.1'), host('h2', false, '198.18.0.2')];
  const plan = planNat({ host: 'h2', hosts, networks: [network('a', 100, { floatingGateway: '198.19.0.7' }), network('c', 300, { provideNat: false })], interfaces: [iface('x', 'a', '198.18.10.5')] });
  t.false(plan.isNatNode);
  t.deepEqual(plan.remoteGateways, [{ vni: 100, mac: '02:61:6e:00:00:64', remote: '198.18.0.1' }]);
  t.deepEqual([plan.gateways, plan.snat, plan.neighbours, plan.floats, plan.needGateway], [[], [], [], [], []]);
});

test('daemon config: uplink device and NAT capacity are validated by name; absent means no NAT here', (t) => {
  const base = { host: 'h1', underlay: { address: '198.18.0.11' } };
  const c = parseDaemonConfig({ ...base, uplink: { device: 'anup0' }, nat: { capacity: 4 } });
  t.deepEqual([c.uplink, c.nat], [{ device: 'anup0' }, { capacity: 4 }]);
  t.deepEqual([parseDaemonConfig(base).uplink, parseDaemonConfig(base).nat], [undefined, undefined]);
  t.throws(() => parseDaemonConfig({ ...base, uplink: { device: 'way-too-long-name0' } }), { message: /config: uplink\.device: must be 1-15 characters/ });
  t.throws(() => parseDaemonConfig({ ...base, nat: { capacity: 0 } }), { message: /config: nat\.capacity/ });
});
