/**
 * The decoder's output: one `Layer` per protocol header, outermost first. A VXLAN or decrypted link
 * datagram is followed by the layers of the inner frame, so `layers` reads like a path down the packet.
 */
import type { Keylog } from './keylog.ts';

export type LayerName = 'eth' | 'arp' | 'ipv4' | 'udp' | 'tcp' | 'icmp' | 'vxlan' | 'link' | 'dhcp' | 'payload';

/** JSON-friendly: 64-bit values (link counters) are decimal strings. */
export type FieldValue = string | number | boolean | string[];

export interface Layer {
  name: LayerName;
  /**
   * Header fields by name. A layer that could not be decoded has `malformed` (what and at which byte),
   * and is the last layer.
   */
  fields: Record<string, FieldValue>;
}

export interface DecodeOptions {
  /** Link keys by receiver index (from `parseKeylog`); without them link data stays encrypted. */
  keys?: Keylog;
  /** UDP port of VXLAN; default 4789. */
  vxlanPort?: number;
  /** UDP port of the encrypted link transport; default 51830. */
  linkPort?: number;
}

export const LINK_UDP_PORT = 51830;
