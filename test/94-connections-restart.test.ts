// kill -9 of the sink host's appnetd: its endpoint reports vanish with its host lease, so the
// connections go WAITING (decided by the surviving host, from what is no longer observed). After
// a restart they are ESTABLISHED again with the same link addresses, the names still resolve, and
// traffic resumes. A capture on the underlay during traffic shows only the encrypted link's UDP
// port: no VXLAN on 4789 and no inner TCP in clear, while `appnet capture --connection` shows the
// connection's own conversation.
//
//   h1: s1 --ao--== encrypted link ==--ai-- sink (h2)
//   h2: s2 --ao-------------------------ai-- sink     (one host: never on the wire)
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { TestNet, tsharkFields } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { apiCall, cliJson, startCliCapture, controlPlaneConfig, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { until } from './helpers/until.ts';

const LINK_PORT = 51830;


const nameOf = (uuid: string) => `db.${uuid.replace(/-/g, '').slice(0, 8)}.appnet`;

test('kill -9 of the sink host: WAITING, then ESTABLISHED again with the same addresses after restart; only encrypted traffic on the wire', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-conn-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net);
  await net.startAppnetd(h1, cp);
  const d2 = await net.startAppnetd(h2, cp);

  const sinkNs = await net.addInstance('sink');
  const s1Ns = await net.addInstance('s1');
  const s2Ns = await net.addInstance('s2');
  for (const i of [sinkNs, s1Ns, s2Ns]) t.teardown(() => rmSync(`/etc/netns/${i.ns}`, { recursive: true, force: true }));
  const sink = await cliJson(h1.ns, 'instance', 'create', 'sink', '--host', 'h2', '--netns', sinkNs.ns, '--inbound', 'in:5201');
  const s1 = await cliJson(h1.ns, 'instance', 'create', 's1', '--host', 'h1', '--netns', s1Ns.ns, '--outbound', 'db');
  const s2 = await cliJson(h1.ns, 'instance', 'create', 's2', '--host', 'h2', '--netns', s2Ns.ns, '--outbound', 'db');
  await cliJson(h1.ns, 'add', s1.uuid, 'db', sink.uuid, 'in');
  await cliJson(h1.ns, 'add', s2.uuid, 'db', sink.uuid, 'in');
  const statuses = async (want: string) => {
    const list = await cliJson(h1.ns, 'list');
    return list.length === 2 && list.every((c: any) => c.status === want) ? list : undefined;
  };
  const before = await until('both ESTABLISHED', () => statuses('ESTABLISHED'));
  const linkOf = (list: any[]) => Object.fromEntries(list.map((c: any) => [c.connection_id, c.link]));
  const addressOf = (list: any[], src: string) => list.find((c: any) => c.source_instance_id === src).link.inbound_address;

  // Traffic across hosts, captured on h1's underlay: only the link port, nothing readable. Meanwhile
  // `appnet capture --connection` on h1 sees that connection's own conversation, in clear, and nothing else.
  const capture = await net.capture(h1.ns, 'ul0', { filter: 'udp or tcp' });
  const c1 = before.find((c: any) => c.source_instance_id === s1.uuid);
  const connFile = path.join(dir, 'connection.pcapng');
  const connCapture = await startCliCapture(net, h1.ns, '--connection', c1.connection_id, '-w', connFile);
  const first = await net.tcpTransfer(s1Ns.ns, sinkNs.ns, addressOf(before, s1.uuid), 1024 * 1024, 5201, { timeoutMs: 20_000 });
  t.is(first.receivedSha256, first.sentSha256);
  connCapture.stop();
  const connDone = await connCapture.done;
  t.is(connDone.code, 0, connDone.stderr);
  t.regex(connDone.stderr, new RegExp(`connection ${c1.connection_id}, vni ${c1.vni}`));
  // IPv4 between the two link addresses on the inbound's port, or ARP between them.
  const inner = tsharkFields(connFile, ['ip.src', 'ip.dst', 'tcp.srcport', 'tcp.dstport', 'arp.src.proto_ipv4', 'arp.dst.proto_ipv4'])
    .map(([s, d, sp, dp, as, ad]) => (s === '' ? [as, ad, '5201', 'arp'] : [s, d, sp, dp]));
  t.true(inner.length > 20, `only ${inner.length} packets in the connection capture; appnet capture said: ${connDone.stderr}`);
  const pair = [c1.link.outbound_address, c1.link.inbound_address].sort().join();
  t.deepEqual(inner.filter(([s, d, sp, dp]) => [s, d].sort().join() !== pair || (sp !== '5201' && dp !== '5201')), [],
    'the connection capture holds only the connection\'s own conversation');
  const file = await capture.stop();
  const ports = tsharkFields(file, ['udp.srcport', 'udp.dstport']);
  // UDP GSO: the capture sees super-datagrams, so a 1 MB transfer is tens of them, not hundreds.
  t.true(ports.length > 10, `only ${ports.length} datagrams captured for a 1 MB transfer`);
  const off = ports.filter(([s, d]) => s !== String(LINK_PORT) || d !== String(LINK_PORT));
  t.deepEqual(off, [], 'datagrams outside the encrypted link port');
  t.deepEqual(tsharkFields(file, ['frame.number'], 'vxlan or tcp'), [], 'plain VXLAN or TCP visible on the underlay');

  // The sink host's daemon dies: its reports go with its lease, the connections wait.
  await d2.kill9();
  const waiting = await until('both WAITING', () => statuses('WAITING'));
  for (const c of waiting) t.regex(c.reason, /inbound side on host h2 is not attached/);

  await d2.restart();
  const after = await until('both ESTABLISHED again', () => statuses('ESTABLISHED'));
  t.deepEqual(linkOf(after), linkOf(before), 'the link addresses changed');
  for (const [ns, src] of [[s1Ns.ns, s1.uuid], [s2Ns.ns, s2.uuid]]) {
    const lookup = await runIn(ns, 'getent', ['hosts', nameOf(src)], { reject: false });
    const file = await readFile(`/etc/netns/${ns}/hosts`, 'utf8').catch((e) => `(unreadable: ${e.message})`);
    t.is(lookup.code, 0, `getent hosts ${nameOf(src)} in ${ns} failed (${lookup.code}: ${lookup.stderr}); /etc/netns/${ns}/hosts:\n${file}`);
    const resolved = lookup.stdout.trim().split(/\s+/)[0];
    t.is(resolved, addressOf(before, src));
    const r = await net.tcpTransfer(ns, sinkNs.ns, resolved, 256 * 1024, 5201, { timeoutMs: 20_000 });
    t.is(r.receivedSha256, r.sentSha256, `traffic from ${src} after the restart`);
  }
  // Every status change is an event, in order.
  const events = await apiCall(h1.ns, 'GET', `/connections/${before[0].connection_id}/events`, TEST_TOKEN);
  t.deepEqual(events.body.map((e: any) => e.to), ['WAITING', 'ESTABLISHED', 'WAITING', 'ESTABLISHED']);
});
