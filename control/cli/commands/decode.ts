// `appnet decode FILE`: reads a capture file (pcap, nanosecond pcap, pcapng) and prints each packet
// decoded; works offline, no API involved.

import { Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { CaptureFileError, readCapture, type Capture, type CapturedPacket } from '../../../dataplane/pcap/index.ts';
import type { Keylog } from '../../../dataplane/decode/index.ts';
import { stdout } from '../context.ts';

interface DecodeOpts {
  keylog?: string;
  summary: boolean;
  count?: number;
  json?: boolean;
}

function count(text: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1) throw new InvalidArgumentError('expected a positive integer');
  return Number(text);
}

/** Seconds.nanoseconds since the epoch as an ISO-8601 UTC time with nanoseconds. */
export function formatTimestamp(tsNs: bigint): string {
  const ms = Number(tsNs / 1_000_000n);
  const iso = new Date(ms).toISOString(); // …T12:34:56.789Z
  return `${iso.slice(0, 19)}.${(tsNs % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

function header(n: number, p: CapturedPacket): string {
  const len = p.data.length === p.origLen ? `${p.origLen}` : `${p.data.length}/${p.origLen}`;
  return `#${n} ${formatTimestamp(p.tsNs)}${p.point !== undefined ? ` ${p.point}` : ''} length ${len}`;
}

// The decoder loads libsodium (asynchronously, at import): only `decode` pays for that, not every command.
type Decoder = typeof import('../../../dataplane/decode/index.ts');

function render({ decodeFrame, formatLayers, summary }: Decoder, capture: Capture, opts: DecodeOpts, keys: Keylog | undefined): void {
  const packets = opts.count !== undefined ? capture.packets.slice(0, opts.count) : capture.packets;
  if (opts.json) {
    const rows = packets.map((p, i) => ({
      number: i + 1, tsNs: p.tsNs.toString(), time: formatTimestamp(p.tsNs), point: p.point ?? null,
      capturedLength: p.data.length, length: p.origLen, layers: decodeFrame(p.data, { keys }),
    }));
    stdout.write(JSON.stringify(rows, null, 2) + '\n');
    return;
  }
  packets.forEach((p, i) => {
    const layers = decodeFrame(p.data, { keys });
    if (opts.summary) stdout.write(`${header(i + 1, p)} ${summary(layers)}\n`);
    else stdout.write(`${header(i + 1, p)}\n${formatLayers(layers, '  ')}`);
  });
}

export function decodeCommand(): Command {
  return new Command('decode')
    .description('decode a capture file (pcap, nanosecond pcap, pcapng): layers per packet, VXLAN and link data included')
    .argument('<file>', 'capture file')
    .option('--keylog <file>', 'link keys (APPNET_LINK_KEY lines, from `appnet keys export`) to decrypt link data')
    .option('--summary', 'one line per packet', false)
    .option('-c, --count <n>', 'decode only the first n packets', count)
    .option('--json', 'print the packets and their layers as JSON')
    .action(async (file: string, opts: DecodeOpts, cmd: Command) => {
      const decoder: Decoder = await import('../../../dataplane/decode/index.ts');
      const json = opts.json === true || cmd.parent?.opts().json === true;
      let keys: Keylog | undefined;
      if (opts.keylog !== undefined) {
        try {
          keys = decoder.parseKeylog(readFileSync(opts.keylog, 'utf8'));
        } catch (err) {
          throw new Error(`${opts.keylog}: ${(err as Error).message}`);
        }
      }
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (err) {
        throw new Error(`${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
      }
      try {
        render(decoder, readCapture(bytes), { ...opts, json }, keys);
      } catch (err) {
        if (!(err instanceof CaptureFileError)) throw err;
        // Show the whole packets before the fault, as tcpdump does, then fail with the offset.
        if (err.partial !== undefined && !json) render(decoder, err.partial, opts, keys);
        throw new Error(`${file}: ${err.message}`);
      }
    });
}
