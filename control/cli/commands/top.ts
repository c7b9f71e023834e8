// `appnet top`: the ports and VNIs by throughput, drops by reason and link peers, from GET /metrics
// every --interval seconds, redrawn in place like top(1). `q` or Ctrl-C quits and gives the terminal back;
// --once prints one frame (after two scrapes) and exits, for scripts and tests.
import { Command, InvalidArgumentError } from 'commander';
import { parsePrometheusText, type Scrape } from '../../metrics/prom-text.ts';
import { clientFor } from '../context.ts';
import { topFrame } from '../top-frame.ts';

const CLEAR = '\x1b[H\x1b[2J';

function seconds(text: string): number {
  const v = Number(text);
  if (!Number.isFinite(v) || v < 0.2 || v > 3600) throw new InvalidArgumentError('expected seconds between 0.2 and 3600');
  return v;
}

export function topCommand(): Command {
  return new Command('top')
    .description('ports and VNIs by throughput, drops by reason and link peers of this host, refreshed in place (q quits)')
    .option('--interval <seconds>', 'seconds between refreshes', seconds, 1)
    .option('--rows <n>', 'rows per table', (v: string) => {
      if (!/^[1-9][0-9]*$/.test(v)) throw new InvalidArgumentError('expected a positive integer');
      return Number(v);
    }, 10)
    .option('--once', 'print one frame (after two scrapes) and exit')
    .action(async (o: { interval: number; rows: number; once?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const host = new URL(client.url('/')).host; // the API it talks to: one host's daemon
      const scrape = async (): Promise<{ at: number; s: Scrape }> => ({ at: performance.now(), s: parsePrometheusText(await client.getText('/metrics')) });
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      let prev = await scrape();
      if (o.once) {
        await sleep(o.interval * 1000);
        const cur = await scrape();
        process.stdout.write(topFrame(cur.s, prev.s, { host, seconds: (cur.at - prev.at) / 1000, rows: o.rows }));
        return;
      }
      let quit = false;
      const stdin = process.stdin;
      const restore = () => { if (stdin.isTTY) stdin.setRawMode(false); stdin.pause(); process.stdout.write('\n'); };
      if (stdin.isTTY) {
        stdin.setRawMode(true);
        stdin.resume();
        // Raw mode delivers Ctrl-C as a byte, not a signal.
        stdin.on('data', (b: Buffer) => { if (b.includes(0x71) || b.includes(0x03)) quit = true; });
      }
      process.once('SIGINT', () => { quit = true; });
      try {
        while (!quit) {
          for (let waited = 0; waited < o.interval * 1000 && !quit; waited += 100) await sleep(100);
          if (quit) break;
          const cur = await scrape();
          process.stdout.write(CLEAR + topFrame(cur.s, prev.s, { host, seconds: (cur.at - prev.at) / 1000, rows: o.rows }));
          prev = cur;
        }
      } finally {
        restore();
      }
    });
}
