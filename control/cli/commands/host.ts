// `appnet host list`: GET /hosts, the live hosts with their underlay address and link public key.

import { Command } from 'commander';
import { emit, withJson } from '../context.ts';
import { formatLoose } from '../table.ts';
import type { View } from './network.ts';

const HOST_COLUMNS = ['name', 'underlay_address', 'public_key', 'api', 'pid', 'started_at'];

export function hostCommand(): Command {
  const host = new Command('host').description('hosts of the mesh');
  withJson(host.command('list'))
    .description('list hosts')
    .action(async (_opts: unknown, cmd: Command) => emit(cmd, (c) => c.get<View[]>('/hosts'), (rows) => formatLoose(rows, HOST_COLUMNS)));
  return host;
}
