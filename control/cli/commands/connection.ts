// Top-level connection commands, named as Nalej's `appnet` CLI (reference A5), so that on this
// binary they read `appnet list`, `appnet add …`:
//
//   list | ls [-o wide]                           the connections table: Nalej's seven columns, a bare
//                                                 STATUS (scripts split on whitespace); -o wide adds REASON
//   add <source> <outbound> <target> <inbound>     202: `RESULT OK` (--json: the record, WAITING); ERROR
//                                                 exits 1 with its reason on one line
//   remove | delete | del | rm <same four> [--force]   202: `RESULT OK` (--json: the record, TERMINATED)
//   inbound available, outbound available         what can be connected (connected outbounds hidden)
//
// None of these names is taken by another top-level command (network, instance, interface, host,
// capture, decode, replay, keys). add and remove answer the docs' "RESULT OK" once the request is
// accepted (reference A5); the record with its status is in --json and `appnet list`.

import { Command } from 'commander';
import { emit, withJson } from '../context.ts';
import { type Column, formatRows } from '../table.ts';
import { seg } from '../client.ts';
import { type View, showObject } from './network.ts';

const SHOW_CONNECTION = ['connection_id', 'status', 'reason', 'source_instance_name', 'outbound_name', 'target_instance_name', 'inbound_name', 'inbound_port', 'inbound_protocol', 'outbound_required', 'link', 'vni'];

const text = (v: unknown) => (v === undefined || v === null ? '-' : String(v));

/** What add and remove print when the API accepted the request (Nalej's docs). */
export const RESULT_OK = 'RESULT OK\n';

/** REASON of `list -o wide`: why a connection is WAITING or in ERROR ('-' when none). */
function reasonCell(row: View): string {
  return row.reason === null || row.reason === undefined || row.status === 'TERMINATED' ? '-' : text(row.reason);
}

export const CONNECTION_COLUMNS: Column<View>[] = [
  { header: 'source_instance_id', get: (c) => c.source_instance_id },
  { header: 'source_instance_name', get: (c) => c.source_instance_name },
  { header: 'outbound', get: (c) => c.outbound_name },
  { header: 'target_instance_id', get: (c) => c.target_instance_id },
  { header: 'target_instance_name', get: (c) => c.target_instance_name },
  { header: 'inbound', get: (c) => c.inbound_name },
  { header: 'status', get: (c) => c.status },
];

const WIDE_COLUMNS: Column<View>[] = [...CONNECTION_COLUMNS, { header: 'reason', get: reasonCell }];

const INBOUND_COLUMNS: Column<View>[] = [
  { header: 'instance_id', get: (r) => r.instance_id },
  { header: 'instance_name', get: (r) => r.instance_name },
  { header: 'inbound_name', get: (r) => r.inbound_name },
  { header: 'port', get: (r) => r.port },
  { header: 'protocol', get: (r) => r.protocol },
];

const OUTBOUND_COLUMNS: Column<View>[] = [
  { header: 'instance_id', get: (r) => r.instance_id },
  { header: 'instance_name', get: (r) => r.instance_name },
  { header: 'outbound_name', get: (r) => r.outbound_name },
  { header: 'required', get: (r) => (r.required === true ? 'TRUE' : 'FALSE') },
];

const tuple = (source: string, outbound: string, target: string, inbound: string) => ({
  source_instance_id: source,
  outbound_name: outbound,
  target_instance_id: target,
  inbound_name: inbound,
});

function withTuple(cmd: Command): Command {
  return withJson(cmd)
    .argument('<source_instance_id>', 'instance whose outbound is connected (UUID or name)')
    .argument('<outbound_iface_name>')
    .argument('<target_instance_id>', 'instance whose inbound is connected (UUID or name)')
    .argument('<inbound_iface_name>');
}

export function connectionCommands(): Command[] {
  const list = withJson(new Command('list'))
    .alias('ls')
    .description('list application connections')
    .option('-o, --output <format>', 'wide: add a REASON column')
    .action(async (opts: { output?: string }, cmd: Command) => {
      if (opts.output !== undefined && opts.output !== 'wide') throw new Error(`--output must be wide, got ${JSON.stringify(opts.output)}`);
      await emit(cmd, (c) => c.get<View[]>('/connections'), (rows) => formatRows(opts.output === 'wide' ? WIDE_COLUMNS : CONNECTION_COLUMNS, rows));
    });

  const add = withTuple(new Command('add'))
    .description("connect an instance's outbound to another instance's inbound (asynchronous: WAITING, then ESTABLISHED)")
    .action(async (source: string, outbound: string, target: string, inbound: string, _opts: unknown, cmd: Command) => {
      let record: View | undefined;
      await emit(
        cmd,
        async (c) => (record = await c.post<View>('/connections', tuple(source, outbound, target, inbound))),
        (r) => (r.status === 'ERROR' ? '' : RESULT_OK),
      );
      // Accepted, but it will never come up: say so in the exit status, not only in the table.
      if (record?.status === 'ERROR') throw new Error(`connection ${text(record.connection_id)} is in ERROR: ${text(record.reason)}`);
    });

  const remove = withTuple(new Command('remove'))
    .aliases(['delete', 'del', 'rm'])
    .description('remove a connection (asynchronous: TERMINATED, then gone)')
    .option('--force', 'confirm removing a connection whose outbound is required')
    .action(async (source: string, outbound: string, target: string, inbound: string, opts: { force?: boolean }, cmd: Command) =>
      emit(
        cmd,
        (c) => c.delete<View>('/connections', { ...tuple(source, outbound, target, inbound), force: opts.force === true }),
        () => RESULT_OK,
      ),
    );

  // One connection with every field, the reason among them (list keeps STATUS bare).
  const connection = new Command('connection').description('one application connection');
  withJson(connection.command('show'))
    .description('show a connection: status, reason, link addresses, VNI')
    .argument('<connection_id>')
    .action(async (id: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View>(`/connections/${seg(id)}`), (v) => showObject(v, SHOW_CONNECTION)),
    );

  const inbound = new Command('inbound').description('inbound interfaces of instances');
  withJson(inbound.command('available'))
    .description('inbounds that can be connected to (all: an inbound takes many connections)')
    .action(async (_opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>('/inbounds/available'), (rows) => formatRows(INBOUND_COLUMNS, rows)),
    );

  const outbound = new Command('outbound').description('outbound interfaces of instances');
  withJson(outbound.command('available'))
    .description('outbounds not yet connected (an outbound takes one connection)')
    .action(async (_opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>('/outbounds/available'), (rows) => formatRows(OUTBOUND_COLUMNS, rows)),
    );

  return [list, add, remove, connection, inbound, outbound];
}
