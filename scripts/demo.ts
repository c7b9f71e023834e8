// The README's demo: two test hosts (network namespaces on a shared underlay), appnetd on each
// with one instance on VNI 42, a ping across through the userspace data plane, the engine's
// counters, and a clean teardown whatever happens.
import type { ExecutionContext } from 'ava';
import { buildOverlay, counters } from '../test/helpers/overlay.ts';
import type { CounterBlock } from '../dataplane/engine.ts';

const cleanups: Array<() => unknown> = [];
let failed = false;
// TestNet was made for ava; this stands in for a test's context (teardown, and whether it passed,
// which decides if the hosts' logs are kept for a post-mortem).
const ctx = {
  teardown: (fn: () => unknown) => cleanups.push(fn),
  get passed() { return !failed; },
} as unknown as ExecutionContext;

function row(name: string, c: CounterBlock): string {
  const drops = Object.entries(c.drops).filter(([, n]) => n > 0).map(([k, n]) => `${k}=${n}`).join(' ') || '-';
  return `  ${name.padEnd(14)} rx ${String(c.rx_packets).padStart(6)} pkts ${String(c.rx_bytes).padStart(9)} B   tx ${String(c.tx_packets).padStart(6)} pkts ${String(c.tx_bytes).padStart(9)} B   drops ${drops}`;
}

try {
  console.log('demo: building two hosts (network namespaces on a bridged underlay, 198.18.0.0/24)');
  const { net, daemons, instances: [a, b] } = await buildOverlay(ctx, { hosts: 2 });
  console.log(`demo: host h1 ${a.host.underlayIp}, instance ${a.inst.ns} ${a.addr} (${a.mac})`);
  console.log(`demo: host h2 ${b.host.underlayIp}, instance ${b.inst.ns} ${b.addr} (${b.mac})`);
  console.log(`demo: ping ${a.addr} -> ${b.addr} over VXLAN VNI 42 through appnetd`);
  const p = await net.ping(a.inst.ns, b.addr, { count: 5, interval: 0.2 });
  process.stdout.write(p.output.split('\n').map((l) => `  ${l}`).join('\n') + '\n');
  for (const [i, d] of daemons.entries()) {
    const c = await counters(d);
    console.log(`demo: engine counters on h${i + 1}`);
    console.log(row('wire', c.wire));
    for (const [vni, v] of Object.entries(c.vnis)) console.log(row(`vni ${vni}`, v));
    for (const port of c.ports) console.log(row(`port ${port.name}`, port));
  }
  failed = p.received !== p.transmitted;
  console.log(failed ? 'demo: FAILED, some pings were lost' : 'demo: OK, 0% loss');
} catch (e) {
  failed = true;
  console.error(`demo: ${(e as Error).message}`);
} finally {
  for (const fn of cleanups.reverse()) await fn();
  console.log(`demo: cleaned up (no namespaces, devices or daemons left)`);
}
process.exit(failed ? 1 : 0);
