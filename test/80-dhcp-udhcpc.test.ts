// Debian's udhcpc (busybox) against the DHCP core over a veth, through a raw-socket shim:
//
//   <prefix>h1 (server side)                          <prefix>-c (instance)
//   python AF_PACKET shim on dh0 <---- veth ----> eth0  udhcpc
//     stdin/stdout: u16 length + frame
//     this test process: DhcpServer.handleFrame -> buildDhcpReplyFrame
//
// The client gets its address, router, DNS, domain and MTU; a server restarted over the same leases gives
// the same address; its RELEASE reaches the store; an unknown MAC gets nothing.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DhcpServer, MemoryLeaseStore, type DhcpBinding } from '../control/services/dhcp-server.ts';
import { buildDhcpReplyFrame, readUdpFrame } from '../control/services/dhcp-frames.ts';
import { TestNet } from './helpers/testnet.ts';
import { run, runIn, spawnIn, stopProcess } from './helpers/run.ts';

const SHIM = `
import socket, struct, sys, threading
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
out = sys.stdout.buffer
def rx():
    while True:
        frame, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        out.write(struct.pack('>H', len(frame)) + frame)
        out.flush()
threading.Thread(target=rx, daemon=True).start()
inp = sys.stdin.buffer
while True:
    head = inp.read(2)
    if len(head) < 2:
        break
    s.send(inp.read(struct.unpack('>H', head)[0]))
`;

// udhcpc runs this on each event: print what it was given, and apply the address (its RELEASE is sent
// from a normal UDP socket, so it needs one). No flush on deconfig: removing the last address flushes the
// neighbour table, which would drop the RELEASE while it waits for the gateway's ARP reply.
const SCRIPT = `#!/bin/sh
case "$1" in
  bound) echo "bound ip=$ip subnet=$subnet router=$router dns=$dns domain=$domain mtu=$mtu lease=$lease serverid=$serverid"
         ip addr replace "$ip/$subnet" dev "$interface" ;;
esac
exit 0
`;

const MAC = '02:00:00:0a:00:01';
const SERVER_MAC = '02:00:00:00:00:01';
const BINDING: DhcpBinding = {
  ipv4: '198.18.4.10',
  network: { cidr: '198.18.4.0/24', gateway: '198.18.4.1', dnsServer: '198.18.4.1', domain: 'ns1.appnet.test', mtu: 1450, leaseSeconds: 3600 },
};

async function until(cond: () => boolean, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await sleep(50);
}

/** Serves DHCP on `dev` in `ns` with `server` until stopped. */
function serve(net: TestNet, ns: string, dev: string, server: () => DhcpServer): ChildProcess {
  const child = net.track(spawn('ip', ['netns', 'exec', ns, 'python3', '-c', SHIM, dev], { detached: true, stdio: ['pipe', 'pipe', 'inherit'] }));
  let buf = Buffer.alloc(0);
  child.stdout!.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const frame = buf.subarray(2, 2 + buf.readUInt16BE(0));
      buf = buf.subarray(2 + frame.length);
      const udp = readUdpFrame(frame);
      if (!udp.ok || udp.frame.dstPort !== 67) continue; // ARP, IPv6 and the like are not ours
      const o = server().handleFrame(frame, Date.now());
      if (o.action !== 'reply') continue;
      const reply = buildDhcpReplyFrame(o);
      const head = Buffer.alloc(2);
      head.writeUInt16BE(reply.length);
      child.stdin!.write(Buffer.concat([head, reply]));
    }
  });
  return child;
}

test('udhcpc gets address, router, DNS, domain and MTU; keeps its address across a server restart; a stranger gets none', async (t) => {
  const net = await TestNet.create(t, { hosts: 1 });
  const host = net.hosts[0];
  const inst = await net.addInstance('c');
  await run('ip', ['-n', host.ns, 'link', 'add', 'dh0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', inst.ns]);
  await run('ip', ['-n', inst.ns, 'link', 'set', 'eth0', 'address', MAC, 'up']);
  // The kernel's own UDP (the unicast RELEASE) would leave the veth with a partial checksum; the engine
  // completes those before punting (engine_tx.cc), the raw shim does not, so the client computes them.
  await runIn(inst.ns, 'ethtool', ['-K', 'eth0', 'tx', 'off']);
  // The server side holds the gateway address so its kernel answers the client's ARP for it.
  await run('ip', ['-n', host.ns, 'link', 'set', 'dh0', 'address', SERVER_MAC, 'up']);
  await run('ip', ['-n', host.ns, 'addr', 'add', '198.18.4.1/24', 'dev', 'dh0']);
  const dir = mkdtempSync(join(tmpdir(), 'appnet-udhcpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'script.sh');
  writeFileSync(script, SCRIPT);
  chmodSync(script, 0o755);
  const udhcpc = (extra: string[] = []) => runIn(inst.ns, 'udhcpc', ['-i', 'eth0', '-f', '-q', '-n', '-t', '4', '-T', '1', '-O', 'mtu', '-s', script, ...extra],
    { timeoutMs: 30_000, reject: false });
  const expected = 'bound ip=198.18.4.10 subnet=255.255.255.0 router=198.18.4.1 dns=198.18.4.1 domain=ns1.appnet.test mtu=1450 lease=3600 serverid=198.18.4.1';

  let leases = new MemoryLeaseStore();
  let server = new DhcpServer({ serverMac: SERVER_MAC, lookup: (m) => (m === MAC ? BINDING : undefined), leases });
  const shim = serve(net, host.ns, 'dh0', () => server);
  t.teardown(() => stopProcess(shim, { group: true }).then(() => undefined));

  const first = await udhcpc();
  t.is(first.code, 0, first.stderr);
  t.true(first.stdout.includes(expected), first.stdout);
  t.like(leases.get(MAC), { ipv4: '198.18.4.10', state: 'bound' });
  t.like(server.counters(), { sent: { OFFER: 1, ACK: 1, NAK: 0 } });

  // "Restart": a new server over what the old one persisted. This client stays running (no -q) so that
  // SIGUSR2 makes it release its lease the way a real client does (busybox does not release on -q -R).
  leases = new MemoryLeaseStore(JSON.parse(JSON.stringify(leases.all())));
  server = new DhcpServer({ serverMac: SERVER_MAC, lookup: (m) => (m === MAC ? BINDING : undefined), leases });
  const second = net.track(spawnIn(inst.ns, 'udhcpc', ['-i', 'eth0', '-f', '-t', '4', '-T', '1', '-O', 'mtu', '-s', script, '-r', '198.18.4.10']));
  let out = '';
  second.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  second.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  await until(() => out.includes('bound ip='), 20_000);
  t.true(out.includes(expected), out);
  second.kill('SIGUSR2');
  // The RELEASE reaches the server through the shim some time after the signal.
  await until(() => leases.get(MAC)?.state === 'released', 10_000);
  await stopProcess(second);
  t.like(leases.get(MAC), { ipv4: '198.18.4.10', state: 'released' }, `${JSON.stringify(server.counters())}\n${out}`);
  t.deepEqual(server.counters().leases, { bind: 1, release: 1, decline: 0 });

  await run('ip', ['-n', inst.ns, 'link', 'set', 'eth0', 'address', '02:00:00:ff:ff:ff']);
  const stranger = await udhcpc(['-t', '2']);
  t.not(stranger.code, 0);
  t.false(stranger.stdout.includes('bound'));
  t.true((server.counters().quiet['unknown-mac'] ?? 0) >= 2);
  t.deepEqual(server.counters().sent, { OFFER: 1, ACK: 1, NAK: 0 });
});
