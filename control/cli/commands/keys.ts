// `appnet keys export`: this host's link session keys as a keylog for `appnet decode --keylog`.
// Off unless the host's operator enabled it (link.allowKeyExport); every export is a host event.
import { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { clientFor, commandOf, stdout } from '../context.ts';

export function keysCommand(): Command {
  const keys = new Command('keys').description('link session keys (operators only)');
  keys.command('export')
    .description('export the current link session keys as a keylog (recorded as a host event)')
    .option('-w, --write <file>', 'write the keylog to this file (mode 0600) instead of stdout')
    .action(async (opts: { write?: string }, ...rest: unknown[]) => {
      const r = await clientFor(commandOf(rest)).post<{ host: string; sessions: number; keylog: string }>('/links/keys/export');
      if (opts.write) {
        writeFileSync(opts.write, r.keylog, { mode: 0o600 });
        process.stderr.write(`appnet keys: ${r.sessions} sessions of host ${r.host} written to ${opts.write}\n`);
      } else {
        stdout.write(r.keylog);
      }
    });
  return keys;
}
