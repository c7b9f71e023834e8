// The `appnet` command tree and its run loop (exit codes: 0 ok, 1 failure, 2 usage).

import { Command, CommanderError } from 'commander';
import { ApiClientError } from './client.ts';
import { captureCommand } from './commands/capture.ts';
import { topCommand } from './commands/top.ts';
import { connectionCommands } from './commands/connection.ts';
import { decodeCommand } from './commands/decode.ts';
import { keysCommand } from './commands/keys.ts';
import { replayCommand } from './commands/replay.ts';
import { hostCommand } from './commands/host.ts';
import { instanceCommand } from './commands/instance.ts';
import { execCommand } from './commands/exec.ts';
import { interfaceCommand } from './commands/interface.ts';
import { networkCommand } from './commands/network.ts';
import { loginCommand, namespaceCommand } from './commands/namespace.ts';

export function buildProgram(): Command {
  const program = new Command('appnet')
    .description('operator CLI of the appnet control API')
    .option('--api <url>', 'API base URL (env APPNET_API, config file, default http://127.0.0.1:7878)')
    .option('--token <token>', 'bearer token (env APPNET_TOKEN, config file)')
    .option('--ca <file>', 'PEM CA certificate to trust for an https API (env APPNET_CA, config file `ca`)')
    .option('--json', 'print API responses as JSON')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ showGlobalOptions: true })
    .exitOverride();
  for (const sub of [networkCommand(), instanceCommand(), interfaceCommand(), hostCommand(), captureCommand(), decodeCommand(), replayCommand(), keysCommand(), namespaceCommand(), loginCommand(), execCommand(), topCommand(), ...connectionCommands()]) program.addCommand(sub);
  return program;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** Runs the CLI on `argv` (node-style: [node, script, ...args]) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // exitOverride is inherited only by commands created afterwards: apply it to the whole tree.
  const stack: Command[] = [program];
  while (stack.length > 0) {
    const c = stack.pop() as Command;
    c.exitOverride();
    c.configureHelp({ showGlobalOptions: true });
    stack.push(...c.commands);
  }
  try {
    await program.parseAsync(argv);
    // A command that ran a child (appnet exec) exits with the child's status.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not errors; commander has already printed its usage message.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') return 0;
      if (err.code === 'commander.executeSubCommandAsync') return err.exitCode;
      return 2;
    }
    const message = err instanceof ApiClientError || err instanceof Error ? err.message : String(err);
    process.stderr.write(`appnet: ${oneLine(message)}\n`);
    return 1;
  }
}
