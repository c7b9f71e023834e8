// The graph of relative imports between the project's TypeScript files, and the cycles in it (issue 18: none
// allowed outside test/). Type-only imports count too: a cycle of types is still a knot for a reader.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/g;
const DYNAMIC = /import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return name === 'node_modules' ? [] : sources(p);
    return /\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts') ? [p] : [];
  });
}

/** file -> files it imports (resolved, only those inside `roots`). */
export function importGraph(roots: string[]): Map<string, string[]> {
  const files = roots.flatMap(sources);
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    const deps = [...text.matchAll(IMPORT), ...text.matchAll(DYNAMIC)].map((m) => path.resolve(path.dirname(f), m[1]));
    graph.set(f, [...new Set(deps.filter((d) => known.has(d)))]);
  }
  return graph;
}

/** Every cycle found by a depth-first walk, each as the files around it (the first repeated at the end). */
export function importCycles(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (state.get(d) === 'open') cycles.push([...stack.slice(stack.indexOf(d)), d]);
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return cycles;
}
