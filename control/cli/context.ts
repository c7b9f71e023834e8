// Shared plumbing of the command files: global options → client, `--json` vs table output.

import type { Command } from 'commander';
import { ApiClient } from './client.ts';
import { ConfigError, resolveConfig } from './config.ts';
import { readFileSync } from 'node:fs';

function readCa(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read the CA file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

export interface GlobalOptions {
  api?: string;
  token?: string;
  ca?: string;
  json?: boolean;
}

export interface Output {
  write(text: string): void;
}

export const stdout: Output = { write: (text) => void process.stdout.write(text) };

/** Adds `--json` to a leaf command. */
export function withJson(cmd: Command): Command {
  return cmd.option('--json', 'print the API response as JSON');
}

export function globals(cmd: Command): GlobalOptions {
  const merged: GlobalOptions = {};
  // Nearest command wins.
  for (let c: Command | null = cmd; c !== null; c = c.parent) {
    const o = c.opts() as GlobalOptions;
    merged.api ??= o.api;
    merged.token ??= o.token;
    merged.ca ??= o.ca;
    merged.json ||= o.json === true;
  }
  return merged;
}

export function clientFor(cmd: Command): ApiClient {
  const g = globals(cmd);
  const config = resolveConfig({ flags: { api: g.api, token: g.token, ca: g.ca } });
  return new ApiClient(config.api, config.token, config.ca === undefined ? undefined : readCa(config.ca));
}

/**
 * Runs one API call and prints its result: pretty JSON with `--json`, else `render(result)`.
 */
export async function emit<T>(cmd: Command, call: (client: ApiClient) => Promise<T>, render: (result: T) => string): Promise<void> {
  const client = clientFor(cmd);
  const result = await call(client);
  if (globals(cmd).json) stdout.write(JSON.stringify(result ?? null, null, 2) + '\n');
  else stdout.write(render(result));
}

/** The last argument of a commander action is the command itself. */
export function commandOf(args: unknown[]): Command {
  return args[args.length - 1] as Command;
}

/** Seconds (or milliseconds) since the epoch → ISO time; anything else as is. */
export function isoTime(value: unknown): unknown {
  if (typeof value !== 'number' || !Number.isFinite(value)) return value;
  const ms = value < 1e11 ? value * 1000 : value;
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
