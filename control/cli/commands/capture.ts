// `appnet capture`: copies of what one of this host's pipeline stages saw, written to a pcap/pcapng
// file or printed as one-line summaries. Stops after -c N packets or on Ctrl-C (SIGINT/SIGTERM),
// showing progress on stderr; the capture session on the daemon is stopped either way.
import { Command, InvalidArgumentError } from 'commander';
import { unpackCaptureRecords } from '../../../dataplane/capture-records.ts';
import { CaptureFile, type CaptureFormat, type PackedRecordScope } from '../../../dataplane/pcap/index.ts';
import { clientFor, commandOf, stdout } from '../context.ts';
import type { ApiClient } from '../client.ts';
import { formatTimestamp } from './decode.ts';

const POINTS = ['port', 'vni_encap', 'vni_decap', 'wire'];
const FORMATS: CaptureFormat[] = ['pcap', 'pcap-ns', 'pcapng'];

interface CaptureOpts {
  network?: string;
  port?: string;
  connection?: string;
  point: string[];
  count?: number;
  write?: string;
  format: CaptureFormat;
  snaplen?: number;
  ring?: number;
  pollMs: number;
  progress?: boolean;
}

/** At most this often, the progress line on stderr is redrawn. */
const PROGRESS_MS = 250;

/** 1234567 -> "1.2 MB". */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return `${v.toFixed(1)} ${units[u]}`;
}

interface Totals { captured: number; dropped: number; filtered: number }

function positive(text: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1) throw new InvalidArgumentError('expected a positive integer');
  return Number(text);
}

function collectPoint(value: string, previous: string[]): string[] {
  if (!POINTS.includes(value)) throw new InvalidArgumentError(`expected one of ${POINTS.join(', ')}`);
  return [...previous, value];
}

/** The record's point as a pcapng interface name: `port:anXXXX` style names need the scope. */
function pointName(r: PackedRecordScope, scope: { port?: string }): string {
  if (r.point === 'port') return `port:${scope.port ?? r.port}:${r.dir}`;
  if (r.point === 'wire') return `wire:${r.dir}`;
  return `${r.point}:${r.vni ?? ''}`;
}

async function runCapture(client: ApiClient, filter: string[], o: CaptureOpts, json: boolean): Promise<void> {
  const points = o.point.length ? o.point : o.port ? ['port'] : ['vni_encap', 'vni_decap'];
  const started = await client.post<{ id: number; port?: string; vni?: number; connection?: string; host: string }>('/captures', {
    ...(o.network ? { network: o.network } : {}),
    ...(o.connection ? { connection: o.connection } : {}),
    ...(o.port ? { port: o.port } : {}),
    points,
    ...(filter.length ? { filter: filter.join(' ') } : {}),
    ...(o.snaplen ? { snaplen: o.snaplen } : {}),
    ...(o.ring ? { ring: o.ring } : {}),
  });
  const decoder = o.write ? undefined : await import('../../../dataplane/decode/index.ts');
  const file = o.write ? new CaptureFile(o.write, o.format, { snaplen: o.snaplen ?? 65535 }) : undefined;
  let stop = false;
  let wake = () => {};
  // Ctrl-C ends the wait at once; the loop then drains what the engine copied since the last poll.
  const onSignal = () => { stop = true; wake(); };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let n = 0;
  let last: Totals | undefined;
  // While it runs: packets and bytes so far, in place, a few times a second, on a terminal or with --progress.
  const live = file !== undefined && (o.progress === true || process.stderr.isTTY === true);
  let shown = 0;
  const progress = (final = false) => {
    if (!live || (!final && Date.now() - shown < PROGRESS_MS)) return;
    shown = Date.now();
    process.stderr.write(`\rappnet capture: ${n} packets, ${formatBytes(file!.bytesWritten)} written to ${o.write}` +
      (last ? `, ${last.dropped} dropped by the ring, ${last.filtered} filtered` : '') + (process.stderr.isTTY ? '\x1b[K' : '\n'));
  };
  try {
    process.stderr.write(`appnet capture: host ${started.host}, points ${points.join(',')}` +
      `${started.connection ? `, connection ${started.connection}` : ''}${started.vni !== undefined ? `, vni ${started.vni}` : ''}${started.port ? `, port ${started.port}` : ''}` +
      `${filter.length ? `, filter "${filter.join(' ')}"` : ''} (Ctrl-C to stop)\n`);
    for (;;) {
      const lastRound = stop;
      // The packed batch, as the engine copied it (dataplane/capture-records.ts).
      const { body, headers } = await client.getBytes(`/captures/${started.id}/records`);
      last = { captured: Number(headers.get('x-appnet-captured')), dropped: Number(headers.get('x-appnet-dropped')), filtered: Number(headers.get('x-appnet-filtered')) };
      const left = o.count === undefined ? Infinity : Math.max(0, o.count - n);
      // Files take the packed batch as it came, converted in one pass; only printing unpacks records.
      if (file) n += file.writePacked(body, (r) => pointName(r, started), left);
      const records = file ? [] : unpackCaptureRecords(body).slice(0, left);
      for (const r of records) {
        n++;
        if (json) {
          stdout.write(JSON.stringify({
            number: n, ts_ns: r.tsNs.toString(), point: r.point, dir: r.dir, port: r.port, vni: r.vni, orig_len: r.origLen,
            data: r.data.toString('base64'), layers: decoder!.decodeFrame(r.data),
          }) + '\n');
        } else {
          stdout.write(`${formatTimestamp(r.tsNs)} ${pointName(r, started)} ${decoder!.summary(decoder!.decodeFrame(r.data))}\n`);
        }
      }
      progress();
      if ((o.count !== undefined && n >= o.count) || lastRound) break;
      await new Promise<void>((r) => { const timer = setTimeout(r, o.pollMs); wake = () => { clearTimeout(timer); r(); }; });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    file?.close();
    const end = await client.delete<{ captured: number; dropped: number; filtered: number }>(`/captures/${started.id}`).catch(() => undefined);
    if (live && process.stderr.isTTY) process.stderr.write('\n');
    process.stderr.write(`appnet capture: ${n} packets${file ? ` (${formatBytes(file.bytesWritten)}) written to ${o.write}` : ''}` +
      `${end ? `; the engine copied ${end.captured}, dropped ${end.dropped} (ring full), filtered ${end.filtered}` : ''}\n`);
  }
}

export function captureCommand(): Command {
  return new Command('capture')
    .description('capture packets at a pipeline stage of this host: write pcap/pcapng (-w) or print summaries')
    .argument('[filter...]', 'tcpdump filter expression (compiled to BPF), e.g. icmp or "udp port 67"')
    .option('--network <ref>', 'only this network (uuid or name)')
    .option('--port <ref>', 'only this port (interface uuid or device name, e.g. an1a2b3c4d)')
    .option('--connection <id>', 'only this application connection (its VNI, inside the encrypted link)')
    .option('--point <point>', `capture point, repeatable: ${POINTS.join(', ')} (default: port with --port, else vni_encap and vni_decap)`, collectPoint, [])
    .option('-c, --count <n>', 'stop after n packets', positive)
    .option('-w, --write <file>', 'write packets to this file instead of printing them')
    .option('--format <format>', `file format: ${FORMATS.join(', ')}`, (v: string) => {
      if (!FORMATS.includes(v as CaptureFormat)) throw new InvalidArgumentError(`expected one of ${FORMATS.join(', ')}`);
      return v as CaptureFormat;
    }, 'pcapng')
    .option('--snaplen <bytes>', 'bytes kept per packet', positive)
    .option('--ring <records>', 'records the engine holds between polls (copies beyond are dropped and counted)', positive)
    .option('--poll-ms <ms>', 'how often to collect from the daemon', positive, 200)
    .option('--progress', 'with -w: packets and bytes written so far on stderr (the default on a terminal)')
    .option('--json', 'print each packet as a JSON line with its decoded layers')
    .action(async (filter: string[], opts: CaptureOpts & { json?: boolean }, ...rest: unknown[]) => {
      const cmd = commandOf(rest);
      const g = cmd.optsWithGlobals() as { json?: boolean };
      await runCapture(clientFor(cmd), filter, opts, g.json === true);
    });
}
