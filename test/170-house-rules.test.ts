// The checks a newcomer relies on (issue 18): no import cycles between the project's TypeScript files, and no
// source file outside test/ past 500 lines. The cycle finder is itself checked on a graph with a known knot.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { importCycles, importGraph } from './helpers/import-graph.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rel = (f: string) => path.relative(ROOT, f);

test('the cycle finder reports a knot and passes a tree', (t) => {
  const knot = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]);
  t.deepEqual(importCycles(knot), [['a', 'b', 'c', 'a']]);
  t.deepEqual(importCycles(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), []);
});

test('no import cycles in dataplane/, control/, bench/, fuzz/ and scripts/', (t) => {
  const graph = importGraph(['dataplane', 'control', 'bench', 'fuzz', 'scripts'].map((d) => path.join(ROOT, d)));
  t.true(graph.size > 100, `the walk found the sources (${graph.size})`);
  t.true([...graph.values()].some((deps) => deps.length > 0), 'and their imports');
  t.deepEqual(importCycles(graph).map((c) => c.map(rel).join(' -> ')), []);
});

test('no tracked source file outside test/ is over 500 lines', (t) => {
  const files = execFileSync('git', ['ls-files', '*.ts', '*.mts', '*.cc', '*.h', '*.js', '*.mjs'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n').filter((f) => f && !f.startsWith('test/'));
  t.true(files.length > 100, `git listed the sources (${files.length})`);
  const long = files.map((f) => [f, readFileSync(path.join(ROOT, f), 'utf8').split('\n').length - 1] as const).filter(([, n]) => n > 500);
  t.deepEqual(long, []);
});
