// `appnet exec INSTANCE -- CMD ARGS...`: runs a command in an instance's network namespace with its
// APPNET_OUTBOUND_* variables set, as Nalej injects them into an application's environment.
//
// Runs on the instance's host (the namespace is local): a namespace by name through `ip netns exec`
// (which also gives the instance's /etc/netns hosts file, where the outbound names resolve), one by
// path (a container's) through `nsenter --net`. The exit status is the command's.
import { spawn } from 'node:child_process';
import { Command } from 'commander';
import { seg } from '../client.ts';
import { clientFor } from '../context.ts';
import type { View } from './network.ts';

/** argv that enters `netns` (a name under /run/netns, or an absolute path) and runs `argv`. Pure. */
export function enterNetns(netns: string, argv: string[]): string[] {
  return netns.startsWith('/') ? ['nsenter', `--net=${netns}`, '--', ...argv] : ['ip', 'netns', 'exec', netns, ...argv];
}

export function execCommand(): Command {
  return new Command('exec')
    .description("run a command in an instance's network namespace with its APPNET_OUTBOUND_* variables (on the instance's host)")
    .argument('<instance>', 'instance UUID or name')
    .argument('<command...>', 'the command and its arguments (after --)')
    .action(async (ref: string, argv: string[], _opts: unknown, cmd: Command) => {
      const client = clientFor(cmd);
      const instance = await client.get<View>(`/instances/${seg(ref)}`);
      const vars = await client.get<Array<{ name: string; value: string }>>(`/instances/${seg(ref)}/env`);
      const env = { ...process.env, ...Object.fromEntries(vars.map((v) => [v.name, v.value])) };
      const [file, ...args] = enterNetns(String(instance.netns), argv);
      const child = spawn(file as string, args, { env, stdio: 'inherit' });
      const code = await new Promise<number>((resolve, reject) => {
        child.on('error', reject);
        child.on('exit', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
      });
      process.exitCode = code;
    });
}
