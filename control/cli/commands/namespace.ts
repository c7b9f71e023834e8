// Namespaces and their keys (system only), and `appnet login`:
//
//   appnet namespace create NAME [--key-name K --key SECRET]   POST /auth/namespaces
//   appnet namespace list                                      GET /auth/namespaces
//   appnet namespace delete NAME                               DELETE /auth/namespaces/NAME
//   appnet namespace key add NAME KEY_NAME SECRET              POST /auth/namespaces/NAME/keys
//   appnet namespace key delete NAME KEY_NAME                  DELETE /auth/namespaces/NAME/keys/KEY_NAME
//   appnet login NAMESPACE [--key SECRET | env APPNET_KEY]     POST /auth, the token saved in the CLI config
//
// A secret on the command line shows in `ps`; `--key -` reads it from stdin instead.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { ApiClient } from '../client.ts';
import { saveSettings } from '../config.ts';
import { clientFor, commandOf, emit, stdout, withJson } from '../context.ts';
import { formatLoose } from '../table.ts';
import type { View } from './network.ts';

function secret(value: string | undefined, what: string): string {
  const text = value === '-' ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : value ?? process.env.APPNET_KEY;
  if (!text) throw new Error(`${what}: give the key with --key SECRET, --key - (stdin) or APPNET_KEY`);
  return text;
}

export function namespaceCommand(): Command {
  const ns = new Command('namespace').description('namespaces and their keys (system only)');
  withJson(ns.command('create <name>'))
    .description('create a namespace, optionally with a first key')
    .option('--key-name <name>', 'name of a first key')
    .option('--key <secret>', "the key's secret ('-' reads stdin)")
    .action(async (name: string, opts: { keyName?: string; key?: string }, cmd: Command) =>
      emit(cmd, (c) => c.post<View>('/auth/namespaces', { namespace: name, ...(opts.keyName ? { key_name: opts.keyName, key: secret(opts.key, 'namespace create') } : {}) }),
        (r) => formatLoose([r], ['name', 'key_names'])));
  withJson(ns.command('list'))
    .description('list namespaces and their key names')
    .action(async (_o: unknown, cmd: Command) => emit(cmd, (c) => c.get<View[]>('/auth/namespaces'), (rows) => formatLoose(rows, ['name', 'key_names', 'builtin'])));
  ns.command('delete <name>')
    .description('delete a namespace (refused while it owns networks or instances)')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await clientFor(cmd).delete(`/auth/namespaces/${encodeURIComponent(name)}`);
      stdout.write(`deleted namespace ${name}\n`);
    });
  const key = ns.command('key').description('keys of a namespace');
  withJson(key.command('add <namespace> <key_name>'))
    .description('add or replace a key')
    .option('--key <secret>', "the key's secret ('-' reads stdin; default env APPNET_KEY)")
    .action(async (name: string, keyName: string, opts: { key?: string }, cmd: Command) =>
      emit(cmd, (c) => c.post<View>(`/auth/namespaces/${encodeURIComponent(name)}/keys`, { key_name: keyName, key: secret(opts.key, 'namespace key add') }),
        (r) => formatLoose([r], ['name', 'key_names'])));
  key.command('delete <namespace> <key_name>')
    .description('delete a key; tokens issued for it stop working')
    .action(async (name: string, keyName: string, _o: unknown, cmd: Command) => {
      await clientFor(cmd).delete(`/auth/namespaces/${encodeURIComponent(name)}/keys/${encodeURIComponent(keyName)}`);
      stdout.write(`deleted key ${keyName} of namespace ${name}\n`);
    });
  return ns;
}

export function loginCommand(): Command {
  return new Command('login')
    .argument('<namespace>')
    .description('get a token for a namespace key and save it (with the API address) in the CLI config')
    .option('--key <secret>', "the key ('-' reads stdin; default env APPNET_KEY)")
    .action(async (namespace: string, opts: { key?: string }, ...rest: unknown[]) => {
      const base = clientFor(commandOf(rest));
      const anonymous = new ApiClient(base.baseUrl, undefined, base.ca);
      const r = await anonymous.post<{ access_token: string; expires_in: number }>('/auth', { namespace, key: secret(opts.key, 'login') });
      const file = saveSettings({ api: base.baseUrl, token: r.access_token });
      process.stderr.write(`appnet: logged in to namespace ${namespace} at ${base.baseUrl}; token saved in ${file}, valid ${Math.round(r.expires_in / 60)} min\n`);
    });
}
