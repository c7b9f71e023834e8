// `appnet instance …`: the /instances routes. Their shapes are not settled yet, so output tables pick
// whatever of the usual columns the API returns, and `--json` prints it verbatim.

import { Command, InvalidArgumentError } from 'commander';
import { seg } from '../client.ts';
import { emit, withJson } from '../context.ts';
import { formatLoose } from '../table.ts';
import { INTERFACE_COLUMNS, type View, showObject } from './network.ts';

const INSTANCE_COLUMNS = ['uuid', 'name', 'namespace', 'host', 'netns', 'state'];

/**
 * One interface of `instance create`, as the in-progress /instances schema takes it:
 * `{network, address?, macaddr?}` (address "none" = no address).
 */
export interface InterfaceSpec {
  network: string;
  address?: string;
  macaddr?: string;
}

const SPEC_KEYS: Record<string, 'address' | 'macaddr'> = {
  address: 'address',
  ip: 'address',
  mac: 'macaddr',
  macaddr: 'macaddr',
  macaddress: 'macaddr',
};

/** `NETREF[,address=IP][,mac=MAC]` → interface spec. */
export function parseNetDesc(text: string): InterfaceSpec {
  const [ref, ...pairs] = text.split(',');
  if (ref === undefined || ref.trim() === '' || ref.includes('=')) {
    throw new InvalidArgumentError(`expected NETREF[,address=IP][,mac=MAC], got ${JSON.stringify(text)}`);
  }
  const spec: InterfaceSpec = { network: ref.trim() };
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair.trim() : pair.slice(0, eq).trim();
    const value = eq < 0 ? '' : pair.slice(eq + 1).trim();
    const field = SPEC_KEYS[key];
    if (field === undefined) throw new InvalidArgumentError(`unknown key ${JSON.stringify(key)} (accepted: address, mac)`);
    if (value === '') throw new InvalidArgumentError(`${key} needs a value`);
    spec[field] = value;
  }
  return spec;
}

function collect(text: string, previous: InterfaceSpec[] | undefined): InterfaceSpec[] {
  return [...(previous ?? []), parseNetDesc(text)];
}

/** FIELD/VALUE of the instance, then its interfaces as a table. */
export function showInstance(view: View | null | undefined): string {
  if (view === null || view === undefined) return '';
  const { interfaces, ...rest } = view;
  let text = showObject(rest, INSTANCE_COLUMNS);
  if (Array.isArray(interfaces)) {
    text += interfaces.length === 0 ? '\nno interfaces\n' : '\n' + formatLoose(interfaces as View[], INTERFACE_COLUMNS);
  }
  return text;
}

export function instanceCommand(): Command {
  const instance = new Command('instance').description('instances (network endpoints on a host)');

  withJson(instance.command('create'))
    .description('create an instance')
    .argument('<name>')
    .requiredOption('--host <host>', 'host to place it on')
    .option('--netns <ns>', 'network namespace of the instance on the host')
    .option('--namespace <ns>', 'namespace to create it in (system only for others)')
    .option('--network <netdesc>', 'NETREF[,address=IP][,mac=MAC]; repeat for more interfaces', collect)
    .action(async (name: string, opts: { host: string; netns?: string; namespace?: string; network?: InterfaceSpec[] }, cmd: Command) =>
      emit(
        cmd,
        (c) =>
          c.post<View>('/instances', {
            name,
            host: opts.host,
            ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
            ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
            interfaces: opts.network ?? [],
          }),
        showInstance,
      ),
    );

  withJson(instance.command('list'))
    .description('list instances')
    .action(async (_opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>('/instances'), (rows) => formatLoose(rows, INSTANCE_COLUMNS)),
    );

  withJson(instance.command('show'))
    .description('show one instance')
    .argument('<ref>', 'instance UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View>(`/instances/${seg(ref)}`), showInstance),
    );

  withJson(instance.command('delete'))
    .description('delete an instance')
    .argument('<ref>', 'instance UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) =>
      emit(
        cmd,
        (c) => c.delete<View | null>(`/instances/${seg(ref)}`),
        (v) => (v === null || v === undefined ? `instance ${ref} deleted\n` : showInstance(v)),
      ),
    );

  withJson(instance.command('interfaces'))
    .description('interfaces of an instance')
    .argument('<ref>', 'instance UUID or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>(`/instances/${seg(ref)}/interfaces`), (rows) => formatLoose(rows, INTERFACE_COLUMNS)),
    );

  return instance;
}
