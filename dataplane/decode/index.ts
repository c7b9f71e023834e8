/** Packet decoding for operators: layers, one-line summaries, the layered view, and link keylogs. */
export * from './layers.ts';
export { decodeFrame } from './decode-frame.ts';
export { summary } from './summary.ts';
export { formatLayers } from './format-layers.ts';
export { parseKeylog, KeylogError, KEYLOG_LABEL, type Keylog } from './keylog.ts';
export { LINK_TYPE_NAMES } from './decode-frame.ts';
