// Plain aligned text tables, no dependencies.

export type Cell = unknown;

export function cellText(value: Cell): string {
  if (value === null || value === undefined) return '-';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string') return value.replace(/\s*\n\s*/g, ' ');
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return value.every((v) => typeof v !== 'object' || v === null) ? value.map(cellText).join(',') : JSON.stringify(value);
  if (typeof value === 'object') {
    const entries = Object.entries(value as object);
    if (entries.length === 0) return '-';
    return entries.map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`).join(',');
  }
  return String(value);
}

/** Rows under upper-cased headers, columns separated by two spaces, no trailing blanks. */
export function formatTable(headers: string[], rows: Cell[][]): string {
  const text = rows.map((r) => headers.map((_, i) => cellText(r[i])));
  const head = headers.map((h) => h.toUpperCase());
  const widths = head.map((h, i) => Math.max(h.length, ...text.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(head), ...text.map(line)].join('\n') + '\n';
}

export interface Column<T> {
  header: string;
  get: (row: T) => Cell;
}

export function formatRows<T>(columns: Column<T>[], rows: T[]): string {
  return formatTable(columns.map((c) => c.header), rows.map((r) => columns.map((c) => c.get(r))));
}

/** A two-column FIELD/VALUE table of one object. */
export function formatObject(obj: Record<string, unknown>, order: string[] = []): string {
  const keys = [...order.filter((k) => k in obj), ...Object.keys(obj).filter((k) => !order.includes(k))];
  return formatTable(['field', 'value'], keys.map((k) => [k, obj[k]]));
}

/**
 * A table of objects whose shape is only loosely known: the preferred columns that any row has, in
 * order, else every scalar key of the rows.
 */
export function formatLoose(rows: Record<string, unknown>[], preferred: string[]): string {
  const present = new Set(rows.flatMap((r) => Object.keys(r)));
  let keys = preferred.filter((k) => present.has(k));
  if (keys.length === 0) keys = [...present].filter((k) => rows.some((r) => typeof r[k] !== 'object' || r[k] === null));
  if (keys.length === 0) keys = [...present];
  return formatTable(keys, rows.map((r) => keys.map((k) => r[k])));
}
