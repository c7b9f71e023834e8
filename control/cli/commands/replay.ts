// `appnet replay FILE --port REF`: injects the frames of a capture into a port, rate-limited, to
// reproduce a problem: by default as if the port's instance sent them again (so the network and its
// services answer), or with --to-instance as if the overlay delivered them to the instance.
import { Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { readCapture } from '../../../dataplane/pcap/index.ts';
import { clientFor, commandOf, stdout } from '../context.ts';

function rate(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 100_000) throw new InvalidArgumentError('expected frames per second in (0, 100000]');
  return n;
}

export function replayCommand(): Command {
  return new Command('replay')
    .description('inject the frames of a capture file into a port, rate-limited')
    .argument('<file>', 'capture file (pcap, nanosecond pcap, pcapng)')
    .requiredOption('--port <ref>', 'the port (interface uuid or device name)')
    .option('--rate <pps>', 'frames per second', rate, 100)
    .option('--to-instance', 'deliver to the instance instead of sending as the instance', false)
    .option('--point <name>', 'only packets recorded at this pcapng interface (e.g. port:an1a2b3c4d:in)')
    .action(async (file: string, opts: { port: string; rate: number; toInstance: boolean; point?: string }, ...rest: unknown[]) => {
      let cap;
      try {
        cap = readCapture(readFileSync(file));
      } catch (e) {
        throw new Error(`${file}: ${(e as Error).message}`);
      }
      const packets = opts.point ? cap.packets.filter((p) => p.point === opts.point) : cap.packets;
      if (packets.length === 0) throw new Error(`${file}: no packets${opts.point ? ` at point ${opts.point}` : ''} to replay`);
      const r = await clientFor(commandOf(rest)).post<{ port: string; sent: number; seconds: number }>('/replay', {
        port: opts.port,
        frames: packets.map((p) => Buffer.from(p.data).toString('base64')),
        rate: opts.rate,
        direction: opts.toInstance ? 'to-instance' : 'from-instance',
      });
      stdout.write(`replayed ${r.sent} frames into ${r.port} in ${r.seconds.toFixed(2)} s\n`);
    });
}
