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

  for (const verb of ['float', 'defloat'] as const) {
    withJson(iface.command(verb))
      .description(verb === 'float'
        ? 'give the interface a floating address (1:1 NAT through the network node)'
        : 'take the floating address away (it returns to the pool)')
      .argument('<uuid>')
      .action(async (uuid: string, _opts: unknown, cmd: Command) =>
        emit(cmd, async (c) => {
          await c.post(`/interfaces/${seg(uuid)}/${verb}`);
          return c.get<View>(`/interfaces/${seg(uuid)}`);
        }, (v) => showObject(v, INTERFACE_COLUMNS)),
      );
  }

  iface.addCommand(metadataCommand('/interfaces', 'interface'));
  return iface;
}
