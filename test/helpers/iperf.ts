// iperf3 between two namespaces of a TestNet: a one-shot server and a client whose JSON report is
// returned. Shared by tests and benchmarks.
import type { TestNet } from './testnet.ts';
import { spawnIn, stopProcess } from './run.ts';

/** Run iperf3 once: a one-shot server (-1) in `serverNs`, the client in `clientNs`; returns the client's JSON. */
export async function iperf3(net: TestNet, clientNs: string, serverNs: string, addr: string, args: string[], seconds: number): Promise<any> {
  // --forceflush: iperf3 writes "Server listening" through stdio buffering, which a pipe would hold back.
  const server = net.track(spawnIn(serverNs, 'iperf3', ['-s', '-1', '--forceflush']));
  let serverOut = '';
  server.stdout!.on('data', (b: Buffer) => (serverOut += b));
  server.stderr!.on('data', (b: Buffer) => (serverOut += b));
  try {
    for (let waited = 0; !/listening/.test(serverOut); waited += 20) {
      if (server.exitCode !== null || waited > 10_000) throw new Error(`iperf3 server in ${serverNs} did not start: ${serverOut}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // Spawned (not runIn) so the client is tracked too: TestNet's SIGINT handler kills tracked processes.
    const client = net.track(spawnIn(clientNs, 'iperf3', ['-c', addr, '-t', String(seconds), '-J', ...args]));
    let out = '';
    let err = '';
    client.stdout!.on('data', (b: Buffer) => (out += b));
    client.stderr!.on('data', (b: Buffer) => (err += b));
    const exited = new Promise((r) => client.once('close', r));
    const timer = setTimeout(() => void stopProcess(client, { group: true, graceMs: 1000 }), (seconds + 20) * 1000);
    await exited;
    clearTimeout(timer);
    const what = `iperf3 -c ${addr} ${args.join(' ') || '(TCP)'} in ${clientNs}`;
    let res;
    try {
      res = JSON.parse(out);
    } catch {
      throw new Error(`${what}: exit ${client.exitCode ?? client.signalCode}, no JSON report: ${err.trim() || out.slice(0, 300)}`);
    }
    if (res.error) throw new Error(`${what}: ${res.error}`);
    return res;
  } finally {
    await stopProcess(server, { group: true, graceMs: 1000 }); // normally gone already (-1)
  }
}

