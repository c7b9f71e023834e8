// The status page's static files at /ui/ (ui/ at the repository's root; docs/status-page.md). They hold no
// data: the page reads the REST API with the viewer's own bearer token, so these routes need none.
// A fixed list of files, read once: uPlot from node_modules, and the Prometheus text reader
// (control/metrics/prom-text.ts) turned into a browser module by esbuild, so the page and `appnet top`
// read metrics with the same code.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transformSync } from 'esbuild';
import type { FastifyInstance } from 'fastify';

export const UI_PREFIX = '/ui/';

/** The repository's root: the nearest directory above this file (or its bundle in dist/) that has ui/index.html. */
function root(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'ui', 'index.html'))) return dir;
    if (dirname(dir) === dir) throw new Error('the status page (ui/index.html) is not in any directory above the daemon');
  }
}

interface Asset { type: string; body: string }

function assets(): Map<string, Asset> {
  const r = root();
  const read = (p: string) => readFileSync(join(r, p), 'utf8');
  const js = 'text/javascript; charset=utf-8';
  return new Map<string, Asset>([
    ['', { type: 'text/html; charset=utf-8', body: read('ui/index.html') }],
    ['app.js', { type: js, body: read('ui/app.js') }],
    ['style.css', { type: 'text/css; charset=utf-8', body: read('ui/style.css') }],
    ['prom-text.js', { type: js, body: transformSync(read('control/metrics/prom-text.ts'), { loader: 'ts', format: 'esm' }).code }],
    ['vendor/uPlot.esm.js', { type: js, body: read('node_modules/uplot/dist/uPlot.esm.js') }],
    ['vendor/uPlot.min.css', { type: 'text/css; charset=utf-8', body: read('node_modules/uplot/dist/uPlot.min.css') }],
  ]);
}

export function registerUiRoutes(app: FastifyInstance): void {
  let files: Map<string, Asset> | undefined;
  app.get('/ui', { config: { summary: 'the status page (redirect to /ui/)' } }, async (_req, reply) => reply.redirect(UI_PREFIX));
  app.get(`${UI_PREFIX}*`, { config: { summary: 'the status page and its static files' } }, async (req, reply) => {
    files ??= assets();
    const name = (req.params as { '*': string })['*'];
    const asset = files.get(name);
    if (!asset) return reply.code(404).send({ error: `no file ${UI_PREFIX}${name}`, status: 404 });
    return reply.type(asset.type).header('cache-control', 'no-cache').send(asset.body);
  });
}
