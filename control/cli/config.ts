// Where the CLI finds the API and its token.
//
// Each setting resolves independently, first match wins:
//   1. flags `--api URL`, `--token T`, `--ca FILE`
//   2. environment `APPNET_API`, `APPNET_TOKEN`, `APPNET_CA`
//   3. a config file `{api, token, ca}`: `$APPNET_CONFIG` if set (then it must exist), otherwise the
//      first of `~/.config/appnet/config.json`, `/etc/appnet/cli.json` that exists
//   4. api defaults to http://127.0.0.1:7878; the token has no default (the API answers 401); without
//      a CA an https API must have a certificate the system trusts.
// `ca` is a PEM file: the CA of the API's certificate (or the certificate itself) to trust.

import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export const DEFAULT_API = 'http://127.0.0.1:7878';

export interface CliConfig {
  api: string;
  token: string | undefined;
  /** Path of a PEM file of CA certificates to trust for an https API. */
  ca: string | undefined;
  /** The config file that was read, if any. */
  file: string | undefined;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface ResolveInput {
  flags?: { api?: string; token?: string; ca?: string };
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** Candidate files when APPNET_CONFIG is not set; default the user's and the system's. */
  candidates?: string[];
}

type FileSettings = { api?: string; token?: string; ca?: string };

function readConfigFile(path: string): FileSettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object {api, token, ca}`);
  }
  const out: FileSettings = {};
  for (const key of ['api', 'token', 'ca'] as const) {
    const value = (parsed as Record<string, unknown>)[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') throw new ConfigError(`config file ${path}: ${key} must be a string`);
    out[key] = value;
  }
  return out;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

export function resolveConfig(input: ResolveInput = {}): CliConfig {
  const env = input.env ?? process.env;
  const flags = input.flags ?? {};
  let file: string | undefined;
  const explicit = nonEmpty(env.APPNET_CONFIG);
  if (explicit !== undefined) {
    file = explicit;
  } else {
    const home = input.home ?? homedir();
    const candidates = input.candidates ?? [join(home, '.config', 'appnet', 'config.json'), '/etc/appnet/cli.json'];
    file = candidates.find((p) => existsSync(p));
  }
  // Read the file only when a setting still needs it, so a broken file does not block explicit flags.
  const needFile = nonEmpty(flags.api ?? env.APPNET_API) === undefined || nonEmpty(flags.token ?? env.APPNET_TOKEN) === undefined ||
    nonEmpty(flags.ca ?? env.APPNET_CA) === undefined;
  const fromFile = file !== undefined && needFile ? readConfigFile(file) : {};
  const api = nonEmpty(flags.api) ?? nonEmpty(env.APPNET_API) ?? nonEmpty(fromFile.api) ?? DEFAULT_API;
  const token = nonEmpty(flags.token) ?? nonEmpty(env.APPNET_TOKEN) ?? nonEmpty(fromFile.token);
  const ca = nonEmpty(flags.ca) ?? nonEmpty(env.APPNET_CA) ?? nonEmpty(fromFile.ca);
  try {
    const url = new URL(api);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw new ConfigError(`the API address ${JSON.stringify(api)} is not an http(s) URL`);
  }
  return { api: api.replace(/\/+$/, ''), token, ca, file: needFile ? file : undefined };
}

/**
 * The config file `appnet login` writes to: $APPNET_CONFIG, else the user's
 * ~/.config/appnet/config.json. Other settings in it are kept.
 */
export function saveSettings(settings: FileSettings, input: { env?: NodeJS.ProcessEnv; home?: string } = {}): string {
  const env = input.env ?? process.env;
  const path = nonEmpty(env.APPNET_CONFIG) ?? join(input.home ?? homedir(), '.config', 'appnet', 'config.json');
  const before = existsSync(path) ? readConfigFile(path) : {};
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, JSON.stringify({ ...before, ...settings }, null, 2) + '\n', { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}
