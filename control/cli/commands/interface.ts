// `appnet interface …`: the /interfaces routes.

import { Command } from 'commander';
import { seg } from '../client.ts';
import { emit, withJson } from '../context.ts';
import { INTERFACE_COLUMNS, type View, metadataCommand, showObject } from './network.ts';

export function interfaceCommand(): Command {
  const iface = new Command('interface').description('network interfaces');

  withJson(iface.command('show'))
    .description('show one interface')
    .argument('<uuid>')
    .action(async (uuid: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.get<View>(`/interfaces/${seg(uuid)}`), (v) => showObject(v, INTERFACE_COLUMNS)),
    );

  iface.addCommand(metadataCommand('/interfaces', 'interface'));
  return iface;
}
