// A reader of the Prometheus text format (version 0.0.4) as appnetd writes it: samples by name and labels.
// Pure. Used by `appnet top` and the status page's tests; comments (# HELP, # TYPE) and timestamps are skipped.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  samples: Sample[];
  /** The value of the one sample of `name` whose labels include `labels` (undefined when none matches). */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Every sample of `name` whose labels include `labels`. */
  all(name: string, labels?: Record<string, string>): Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/gy;

function unescape(v: string): string {
  return v.replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

/** Throws Error naming the line for a line that is neither a comment nor a sample. */
export function parsePrometheusText(text: string): Scrape {
  const samples: Sample[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`metrics line ${i + 1} is not a sample: ${line.slice(0, 80)}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      LABEL.lastIndex = 0;
      let l: RegExpExecArray | null;
      while (LABEL.lastIndex < m[2].length && (l = LABEL.exec(m[2])) !== null) labels[l[1]] = unescape(l[2]);
      if (LABEL.lastIndex < m[2].length) throw new Error(`metrics line ${i + 1} has unreadable labels: ${line.slice(0, 80)}`);
    }
    samples.push({ name: m[1], labels, value: parseValue(m[3]) });
  }
  const matches = (s: Sample, name: string, labels: Record<string, string>) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  return {
    samples,
    all: (name, labels = {}) => samples.filter((s) => matches(s, name, labels)),
    value: (name, labels = {}) => samples.find((s) => matches(s, name, labels))?.value,
  };
}
