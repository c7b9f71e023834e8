/**
 * `formatLayers(layers)`: the indented multi-line view, one line per layer (each layer one step deeper,
 * as each is carried inside the previous one), list fields one item per line below their layer.
 */
import type { Layer } from './layers.ts';

const LABELS: Readonly<Record<Layer['name'], string>> = {
  eth: 'Ethernet', arp: 'ARP', ipv4: 'IPv4', udp: 'UDP', tcp: 'TCP', icmp: 'ICMP', vxlan: 'VXLAN',
  link: 'Link', dhcp: 'DHCP', payload: 'Payload',
};

export function formatLayers(layers: readonly Layer[], indent = ''): string {
  const lines: string[] = [];
  layers.forEach((layer, depth) => {
    const pad = indent + '  '.repeat(depth);
    const scalars: string[] = [];
    const lists: [string, string[]][] = [];
    for (const [key, value] of Object.entries(layer.fields)) {
      if (key === 'malformed') continue;
      if (Array.isArray(value)) lists.push([key, value]);
      else scalars.push(`${key}=${typeof value === 'string' && /\s/.test(value) ? JSON.stringify(value) : value}`);
    }
    lines.push(`${pad}${LABELS[layer.name]}: ${scalars.join(' ')}`.trimEnd());
    for (const [key, items] of lists) {
      if (items.length === 0) continue;
      lines.push(`${pad}    ${key}:`);
      for (const item of items) lines.push(`${pad}      ${item}`);
    }
    if (layer.fields.malformed !== undefined) lines.push(`${pad}    MALFORMED: ${layer.fields.malformed}`);
  });
  return lines.join('\n') + '\n';
}
