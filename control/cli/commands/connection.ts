// Top-level connection commands, named as Nalej's `appnet` CLI (reference A5), so that on this
// binary they read `appnet list`, `appnet add …`:
//
//   list | ls                                     the connections table
//   add <source> <outbound> <target> <inbound>     202: the record, WAITING (ERROR exits 1 with its reason)
//   remove | delete | del | rm <same four> [--force]   202: the record, TERMINATED
//   inbound available, outbound available         what can be connected (connected outbounds hidden)
//
// None of these names is taken by another top-level command (network, instance, interface, host,
// capture, decode, replay, keys). Choice (reference A8): add and remove print the connection as a
// `list` row, with its status, instead of Nalej's request table or the docs' "RESULT OK": the
// status is what tells the operator what happens next.

import { Command } from 'commander';
import { emit, withJson } from '../context.ts';
import { type Column, formatRows } from '../table.ts';
import type { View } from './network.ts';

const text = (v: unknown) => (v === undefined || v === null ? '-' : String(v));

/** STATUS, with the reason when there is one (ERROR, WAITING after the link was up, TERMINATED). */
export function statusCell(row: View): string {
  const status = text(row.status);
  return row.reason === null || row.reason === undefined || row.status === 'TERMINATED' ? status : `${status}: ${text(row.reason)}`;
}

export const CONNECTION_COLUMNS: Column<View>[] = [
  { header: 'source_instance_id', get: (c) => c.source_instance_id },
  { header: 'source_instance_name', get: (c) => c.source_instance_name },
  { header: 'outbound', get: (c) => c.outbound_name },
  { header: 'target_instance_id', get: (c) => c.target_instance_id },
  { header: 'target_instance_name', get: (c) => c.target_instance_name },
  { header: 'inbound', get: (c) => c.inbound_name },
  { header: 'status', get: statusCell },
];

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
    .action(async (_opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View[]>('/connections'), (rows) => formatRows(CONNECTION_COLUMNS, rows)),
    );

  const add = withTuple(new Command('add'))
    .description("connect an instance's outbound to another instance's inbound (asynchronous: WAITING, then ESTABLISHED)")
    .action(async (source: string, outbound: string, target: string, inbound: string, _opts: unknown, cmd: Command) => {
      let record: View | undefined;
      await emit(
        cmd,
        async (c) => (record = await c.post<View>('/connections', tuple(source, outbound, target, inbound))),
        (r) => formatRows(CONNECTION_COLUMNS, [r]),
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
        (r) => formatRows(CONNECTION_COLUMNS, [r]),
      ),
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

  return [list, add, remove, inbound, outbound];
}
