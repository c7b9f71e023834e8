// Where each kind of record lives in the store: every key prefix of the repositories, in one place so that
// the repositories, the state view and the reconciler name them without importing each other.

export const NETWORKS_PREFIX = '/appnet/networks/';
export const IPAM_PREFIX = '/appnet/ipam/';
export const VNI_PREFIX = '/appnet/vni/';
export const EVENTS_PREFIX = '/appnet/events/';
export const INSTANCES_PREFIX = '/appnet/instances/';
export const CONNECTIONS_PREFIX = '/appnet/connections/';
export const OUTBOUND_CLAIMS_PREFIX = '/appnet/connection-claims/outbound/';
export const LINK_CLAIMS_PREFIX = '/appnet/connection-claims/link/';
export const CONNECTION_EVENTS_PREFIX = '/appnet/connection-events/';
export const INTERFACES_PREFIX = '/appnet/interfaces/';
export const MACS_PREFIX = '/appnet/macs/';
export const ATTACHMENTS_PREFIX = '/appnet/attachments/';
export const HOSTS_PREFIX = '/appnet/hosts/';
/** Operator events of a host (e.g. a session key export), under <prefix><host>/<ms since epoch>. */
export const HOST_EVENTS_PREFIX = '/appnet/host-events/';
export const DHCP_LEASES_PREFIX = '/appnet/dhcp-leases/';
