// Runs a TypeScript entry point from a JavaScript bundle in dist/, rebuilt by esbuild whenever a source under
// control/ or dataplane/ is newer than it. Why not tsx at run time: its loader runs in a second V8 isolate
// (Node's module-hooks thread) and costs every process ~35 MB of RSS and ~300 ms of start-up, which a
// sidecar on every host and a CLI run from scripts should not pay.
//
// Packages stay external (loaded from node_modules as usual). The bundle sits one directory below the
// repository root, like control/ and dataplane/, so paths the sources resolve against import.meta.url
// (the native addon) stay right. Concurrent starts each build to their own temporary file and rename it
// into place, so a reader never sees half a bundle.
import { readdirSync, renameSync, statSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE_DIRS = ['control', 'dataplane'];

function newestSource(dir, newest = 0) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = newestSource(p, newest);
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function mtime(file) {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** Builds dist/<name>.mjs from `entry` (relative to the repository root) if missing or stale; returns its path. */
export async function bundle(entry, name) {
  const out = path.join(ROOT, 'dist', `${name}.mjs`);
  const sources = Math.max(...SOURCE_DIRS.map((d) => newestSource(path.join(ROOT, d))), mtime(path.join(ROOT, 'package-lock.json')));
  if (mtime(out) >= sources) return out;
  const { build } = await import('esbuild');
  mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await build({
      entryPoints: [path.join(ROOT, entry)],
      outfile: tmp,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      sourcemap: 'inline',
      // Maps name files and lines only: the sources are in the checkout, and a daemon that embedded them
      // would hold a second copy of its code in memory once Node parses the map.
      sourcesContent: false,
      logLevel: 'error',
    });
    renameSync(tmp, out);
  } finally {
    rmSync(tmp, { force: true });
  }
  return out;
}

/** Bundles `entry` if needed, then runs it in this process. */
export async function runBundled(entry, name) {
  // Stack traces point at the TypeScript sources (the bundle carries its source map inline).
  process.setSourceMapsEnabled(true);
  await import(pathToFileURL(await bundle(entry, name)).href);
}

/** Every launcher's bundle: `node bin/bundled.js` builds them ahead of time (setup, images). */
export const BUNDLES = [['control/daemon/appnetd.ts', 'appnetd'], ['control/cli/appnet.ts', 'appnet'], ['control/cni/main.ts', 'appnet-cni']];

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await Promise.all(BUNDLES.map(([entry, name]) => bundle(entry, name)));
}
