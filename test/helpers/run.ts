// Promise wrappers around child_process for tests: one-shot commands (`run`, `runIn`) and long-running
// processes (`spawnIn`) inside network namespaces, plus the stop/kill helpers that TestNet's teardown uses.
//
// `ip netns exec NS CMD` and `nsenter -t PID -n -m -u CMD` exec CMD in place (no fork), so the pid we get
// back is CMD's own pid.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export interface RunOptions {
  /** Written to the child's stdin, which is then closed. */
  input?: string | Buffer;
  /** Kill the child (with `killSignal`, then SIGKILL 2 s later) after this long. Default: no limit. */
  timeoutMs?: number;
  /** Default SIGTERM. `ping` prints its statistics on SIGINT. */
  killSignal?: NodeJS.Signals;
  /** Default true: a non-zero exit (or a signal) rejects with a CommandError. */
  reject?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit code, or null when the child died from a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

/** A command failed; the message carries everything needed to reproduce and diagnose it. */
export class CommandError extends Error {
  constructor(
    readonly commandLine: string,
    readonly result: RunResult,
  ) {
    const how = result.timedOut
      ? `timed out (killed with ${result.signal ?? 'a signal'})`
      : result.code !== null ? `exited with code ${result.code}` : `died from ${result.signal}`;
    const stderr = result.stderr.trim();
    super(`command failed: ${commandLine}\n  ${how}${stderr ? `\n  stderr: ${stderr}` : ''}`);
    this.name = 'CommandError';
  }
}

/** Shell-quoted command line, for messages only (nothing here goes through a shell). */
export function formatCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const commandLine = formatCommand(cmd, args);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    let escalateTimer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) {
      killTimer = setTimeout(() => {
        timedOut = true;
        child.kill(opts.killSignal ?? 'SIGTERM');
        escalateTimer = setTimeout(() => child.kill('SIGKILL'), 2000);
      }, opts.timeoutMs);
    }
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.stdin!.on('error', () => {}); // EPIPE when the child exits without reading its input
    child.stdin!.end(opts.input ?? '');
    child.on('error', (e) => {
      clearTimeout(killTimer);
      clearTimeout(escalateTimer);
      reject(new Error(`cannot run ${commandLine}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(killTimer);
      clearTimeout(escalateTimer);
      const result: RunResult = {
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        code,
        signal,
        timedOut,
      };
      if ((code !== 0 || timedOut) && opts.reject !== false) reject(new CommandError(commandLine, result));
      else resolve(result);
    });
  });
}

/** `ip netns exec <ns> <cmd> <args...>`. */
export function runIn(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  const [c, a] = enter(ns, cmd, args);
  return run(c, a, opts);
}

// Machines (TestNet.create with `machines: true`): a host namespace whose commands also run in the mount and
// UTS namespaces that a holder process pins, so each host has its own /var/lib/appnet, /run/appnet, /tmp and
// /etc/netns. An instance placed on a machine is entered from inside that machine, so it sees the files its
// host's daemon wrote for it (its /etc/netns/<ns>/hosts) and nothing of another host's.
const machineHolders = new Map<string, number>(); // host namespace -> holder pid
const instanceHosts = new Map<string, string>(); // instance namespace -> host namespace

export function registerMachine(hostNs: string, holderPid: number): void {
  machineHolders.set(hostNs, holderPid);
}

export function placeInstance(instanceNs: string, hostNs: string): void {
  instanceHosts.set(instanceNs, hostNs);
}

export function forgetNamespace(ns: string): void {
  machineHolders.delete(ns);
  instanceHosts.delete(ns);
}

/** The holder pid of the machine `ns` is (or whose instance it is), if any. */
export function machineOf(ns: string): number | undefined {
  return machineHolders.get(ns) ?? machineHolders.get(instanceHosts.get(ns) ?? '');
}

/** The command line that runs `cmd` in `ns`: `ip netns exec`, or nsenter into the machine first. */
function enter(ns: string, cmd: string, args: readonly string[]): [string, string[]] {
  const holder = machineHolders.get(ns);
  if (holder !== undefined) return ['nsenter', ['-t', String(holder), '-n', '-m', '-u', '--', cmd, ...args]];
  const host = machineHolders.get(instanceHosts.get(ns) ?? '');
  if (host !== undefined) return ['nsenter', ['-t', String(host), '-m', '-u', '--', 'ip', 'netns', 'exec', ns, cmd, ...args]];
  return ['ip', ['netns', 'exec', ns, cmd, ...args]];
}

export interface SpawnInOptions {
  /** Append stdout and stderr to this file. Without it both are pipes on the returned ChildProcess. */
  logFile?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Start a long-running process in `ns`. It leads its own process group (detached), so `signalGroup` reaches
 * anything it forks. The caller owns it: stop it with `stopProcess`, or register it with a TestNet.
 */
export function spawnIn(ns: string, cmd: string, args: readonly string[], opts: SpawnInOptions = {}): ChildProcess {
  const [c, argv] = enter(ns, cmd, args);
  if (opts.logFile === undefined) {
    return spawn(c, argv, { env: opts.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  }
  const fd = openSync(opts.logFile, 'a');
  try {
    return spawn(c, argv, { env: opts.env, detached: true, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd); // the child holds its own copy
  }
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Resolves true once the child has exited, false if it is still running after `timeoutMs`. */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child) || child.pid === undefined) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** Signal the child's whole process group (spawnIn children lead one); falls back to the child alone. */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || hasExited(child)) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      process.kill(child.pid, signal);
    } catch {
      // already gone
    }
  }
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Send `signal` to the child, wait up to `graceMs`, then SIGKILL its process group and wait for the exit. */
export async function stopProcess(
  child: ChildProcess,
  opts: { signal?: NodeJS.Signals; graceMs?: number; group?: boolean } = {},
): Promise<ExitStatus> {
  if (!hasExited(child) && child.pid !== undefined) {
    if (opts.group) signalGroup(child, opts.signal ?? 'SIGTERM');
    else child.kill(opts.signal ?? 'SIGTERM');
    if (!(await waitExit(child, opts.graceMs ?? 5000))) {
      signalGroup(child, 'SIGKILL');
      if (!(await waitExit(child, 5000))) throw new Error(`pid ${child.pid} survived SIGKILL for 5 s`);
    }
  }
  return { code: child.exitCode, signal: child.signalCode };
}
