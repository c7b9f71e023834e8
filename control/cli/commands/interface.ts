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

  // Hot-plug: the instance's host makes (or removes) the device in the running instance.
  withJson(iface.command('add'))
    .description('add an interface to a running instance')
    .argument('<instance>', 'instance UUID or name')
    .argument('<network>', 'network UUID or name')
    .option('--address <ipv4>', 'the address to reserve ("none": no address); default: allocated')
    .option('--mac <mac>', 'the MAC; default: allocated')
    .action(async (instance: string, network: string, opts: { address?: string; mac?: string }, cmd: Command) =>
      emit(cmd, (c) => c.post<View>(`/instances/${seg(instance)}/interfaces`, {
        network, ...(opts.address !== undefined ? { address: opts.address } : {}), ...(opts.mac !== undefined ? { macaddr: opts.mac } : {}),
      }), (v) => showObject(v, INTERFACE_COLUMNS)),
    );

  withJson(iface.command('delete'))
    .aliases(['remove', 'rm'])
    .description('remove an interface from its instance; its address and MAC are freed')
    .argument('<uuid>')
    .action(async (uuid: string, _opts: unknown, cmd: Command) =>
      emit(cmd, (c) => c.delete<View>(`/interfaces/${seg(uuid)}`), (v) => showObject(v, INTERFACE_COLUMNS)),
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
