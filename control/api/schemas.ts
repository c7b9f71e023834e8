// JSON schemas of the /networks routes. They are the single source for request validation
// (fastify/ajv) and for the OpenAPI document served at /openapi.json.
//
// Types are not coerced (a number is not a netblock string); query-string values are therefore
// declared as strings and converted by the handlers.
//
// Bodies are closed (`additionalProperties: false`, and ajv is configured not to strip extras),
// so an unknown parameter is a 400 naming it, as in the reference, where every parameter
// becomes a handler argument and an unknown one is a TypeError.

export type JsonSchema = Record<string, unknown>;

const ref = { type: 'object', required: ['ref'], properties: { ref: { type: 'string', minLength: 1 } } } as const;
const refKey = {
  type: 'object',
  required: ['ref', 'key'],
  properties: { ref: { type: 'string', minLength: 1 }, key: { type: 'string', minLength: 1 } },
} as const;
const namespaceOnly = {
  type: 'object',
  additionalProperties: false,
  properties: { namespace: { type: 'string', minLength: 1 } },
} as const;

export const networkViewSchema: JsonSchema = {
  type: 'object',
  properties: {
    uuid: { type: 'string' },
    state: { type: 'string', enum: ['initial', 'created', 'delete-wait', 'deleted', 'error'] },
    metadata: { type: 'object', additionalProperties: { type: 'string' } },
    version: { type: 'integer' },
    name: { type: 'string' },
    namespace: { type: ['string', 'null'] },
    netblock: { type: 'string' },
    provide_dhcp: { type: 'boolean' },
    provide_nat: { type: 'boolean' },
    provide_dns: { type: 'boolean' },
    encrypt: { type: 'boolean' },
    floating_gateway: { type: ['string', 'null'] },
    vxlan_id: { type: 'integer' },
    vxid: { type: 'integer', description: 'vxlan_id again, as the reference docs name it' },
    error: { type: 'string', description: 'why the network is in state error (present in that state only)' },
  },
};

export const errorSchema: JsonSchema = {
  type: 'object',
  required: ['error', 'status'],
  properties: { error: { oneOf: [{ type: 'string' }, { type: 'object' }] }, status: { type: 'integer' } },
};

export interface RouteSchema {
  params?: JsonSchema;
  querystring?: JsonSchema;
  body?: JsonSchema;
}

export interface RouteDoc {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  summary: string;
  schema: RouteSchema;
  /** Schema of the 200 body, for the document only (responses are not filtered through it). */
  response: JsonSchema;
  /** Error statuses this route documents. */
  errors: number[];
}

const metadataMap: JsonSchema = { type: 'object', additionalProperties: { type: 'string' } };

// GET/POST {base}/metadata, PUT/DELETE {base}/metadata/:key, for networks and interfaces alike.
const metadataRoutes = (base: string, params: JsonSchema, paramsKey: JsonSchema, what: string): RouteDoc[] => [
  { method: 'GET', url: `${base}/metadata`, summary: `Metadata of ${what}`, schema: { params }, response: metadataMap, errors: [401, 404] },
  {
    method: 'POST',
    url: `${base}/metadata`,
    summary: 'Set one metadata key',
    schema: {
      params,
      body: {
        type: 'object',
        required: ['key', 'value'],
        additionalProperties: false,
        properties: { key: { type: 'string', minLength: 1 }, value: { type: 'string' } },
      },
    },
    response: metadataMap,
    errors: [400, 401, 404],
  },
  {
    method: 'PUT',
    url: `${base}/metadata/:key`,
    summary: 'Set one metadata key',
    schema: {
      params: paramsKey,
      body: { type: 'object', required: ['value'], additionalProperties: false, properties: { value: { type: 'string' } } },
    },
    response: metadataMap,
    errors: [400, 401, 404],
  },
  {
    method: 'DELETE',
    url: `${base}/metadata/:key`,
    summary: 'Delete one metadata key',
    schema: { params: paramsKey },
    response: metadataMap,
    errors: [401, 404],
  },
];

export const ROUTES: RouteDoc[] = [
  {
    method: 'POST',
    url: '/networks',
    summary: 'Create a network (state initial)',
    schema: {
      body: {
        type: 'object',
        required: ['netblock', 'name'],
        additionalProperties: false,
        properties: {
          netblock: { type: 'string' },
          name: { type: 'string' },
          provide_dhcp: { type: 'boolean' },
          provide_nat: { type: 'boolean' },
          provide_dns: { type: 'boolean' },
          encrypt: { type: 'boolean', description: 'carry the VXLAN mesh on encrypted links' },
          namespace: { type: 'string', minLength: 1 },
          vxlan_id: { type: 'integer' },
        },
      },
    },
    response: networkViewSchema,
    errors: [400, 401, 403, 404, 409, 507],
  },
  {
    method: 'GET',
    url: '/networks',
    summary: "List the caller's networks (system: all); `all` includes deleted ones",
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { all: { type: 'string', enum: ['', 'true', 'false', '1', '0'] } },
      },
    },
    response: { type: 'array', items: networkViewSchema },
    errors: [400, 401],
  },
  {
    method: 'DELETE',
    url: '/networks',
    summary: 'Delete every network of a namespace',
    schema: {
      body: {
        type: 'object',
        required: ['confirm'],
        additionalProperties: false,
        properties: {
          confirm: { type: 'boolean' },
          namespace: { type: 'string', minLength: 1 },
          clean_wait: { type: 'boolean' },
        },
      },
    },
    response: { type: 'array', items: { type: 'string' } },
    errors: [400, 401, 403],
  },
  {
    method: 'GET',
    url: '/networks/:ref',
    summary: 'Show a network by UUID or name',
    schema: { params: ref, querystring: namespaceOnly },
    response: networkViewSchema,
    errors: [400, 401, 404],
  },
  {
    method: 'DELETE',
    url: '/networks/:ref',
    summary: 'Delete a network (delete-wait while interfaces remain); null if already deleted',
    // `nullable`: a DELETE may come without any body.
    schema: { params: ref, body: { ...namespaceOnly, nullable: true } },
    response: { oneOf: [networkViewSchema, { type: 'null' }] },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'GET',
    url: '/networks/:ref/events',
    summary: 'Events of a network, newest first',
    schema: {
      params: ref,
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          event_type: { type: 'string', minLength: 1 },
          limit: { type: 'string', pattern: '^[0-9]+$', description: 'integer 1..10000, default 100' },
        },
      },
    },
    response: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          timestamp: { type: 'number' },
          fqdn: { type: 'string' },
          duration: { type: ['number', 'null'] },
          message: { type: 'string' },
          type: { type: 'string' },
          extra: { type: ['object', 'null'] },
        },
      },
    },
    errors: [400, 401, 404],
  },
  {
    method: 'GET',
    url: '/networks/:ref/addresses',
    summary: 'Address reservations of a network, sorted by address',
    schema: { params: ref },
    response: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          address: { type: 'string' },
          user: { oneOf: [{ type: 'array', items: { type: 'string' } }, { type: 'null' }] },
          when: { type: 'number' },
          type: { type: 'string' },
          comment: { type: ['string', 'null'] },
        },
      },
    },
    errors: [401, 404],
  },
  ...metadataRoutes('/networks/:ref', ref, refKey, 'a network'),
];

const uuidParam = { type: 'object', required: ['uuid'], properties: { uuid: { type: 'string', minLength: 1 } } } as const;
const uuidKey = {
  type: 'object',
  required: ['uuid', 'key'],
  properties: { uuid: { type: 'string', minLength: 1 }, key: { type: 'string', minLength: 1 } },
} as const;

export const interfaceViewSchema: JsonSchema = {
  type: 'object',
  properties: {
    uuid: { type: 'string' },
    network_uuid: { type: 'string' },
    instance_uuid: { type: 'string' },
    macaddr: { type: 'string' },
    ipv4: { type: ['string', 'null'] },
    order: { type: 'integer' },
    device: { type: 'string' },
    state: { type: 'string', enum: ['initial', 'created', 'deleted', 'error'] },
    floating: { type: ['string', 'null'] },
    metadata: metadataMap,
    version: { type: 'integer' },
    model: { type: 'string', enum: ['virtio'] },
  },
};

// Application-network interfaces of an instance (instances/appnet-interfaces.ts has the rules).
const inboundSchema: JsonSchema = {
  type: 'object',
  required: ['name', 'port'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', description: "1..63 of [A-Za-z0-9_-], starting with a letter" },
    port: { type: 'integer', description: 'the port a connection to this inbound opens, 1..65535' },
    protocol: { type: 'string', enum: ['tcp', 'udp'], description: 'default tcp' },
  },
};
const outboundSchema: JsonSchema = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', description: "1..63 of [A-Za-z0-9_-], starting with a letter" },
    required: { type: 'boolean', description: 'removing its connection needs force; default false' },
  },
};

export const instanceViewSchema: JsonSchema = {
  type: 'object',
  properties: {
    uuid: { type: 'string' },
    name: { type: 'string' },
    namespace: { type: 'string' },
    host: { type: 'string' },
    netns: { type: 'string' },
    interfaces: { type: 'array', items: interfaceViewSchema },
    inbounds: { type: 'array', items: inboundSchema },
    outbounds: { type: 'array', items: outboundSchema },
    metadata: metadataMap,
    version: { type: 'integer' },
  },
};


/** Routes of instances and interfaces. */
export const INSTANCE_ROUTES: RouteDoc[] = [
  {
    method: 'POST',
    url: '/instances',
    summary: 'Create an instance with its interfaces (addresses and MACs allocated in one transaction)',
    schema: {
      body: {
        type: 'object',
        required: ['name', 'host'],
        additionalProperties: false,
        properties: {
          name: { type: 'string' },
          host: { type: 'string' },
          netns: { type: 'string' },
          namespace: { type: 'string', minLength: 1 },
          interfaces: {
            type: 'array',
            items: {
              type: 'object',
              required: ['network'],
              additionalProperties: false,
              properties: {
                network: { type: 'string', minLength: 1, description: 'network UUID or name' },
                address: { type: ['string', 'null'], description: 'IPv4 to reserve; "none" or null for no address' },
                macaddr: { type: 'string' },
                device: { type: 'string', description: 'the device name in the instance (default an + 8 hex digits of the interface uuid)' },
              },
            },
          },
          inbounds: { type: 'array', items: inboundSchema },
          outbounds: { type: 'array', items: outboundSchema },
          connect: { type: 'array', items: { type: 'object' } }, // deploy-time connections (connections/deploy.ts)
        },
      },
    },
    response: instanceViewSchema,
    errors: [400, 401, 404, 406, 409, 507],
  },
  {
    method: 'GET',
    url: '/instances',
    summary: "List the caller's instances (system: all)",
    schema: {},
    response: { type: 'array', items: instanceViewSchema },
    errors: [401],
  },
  {
    method: 'GET',
    url: '/instances/:ref',
    summary: 'Show an instance by UUID or name',
    schema: { params: ref },
    response: instanceViewSchema,
    errors: [400, 401, 404],
  },
  {
    method: 'DELETE',
    url: '/instances/:ref',
    summary:
      'Delete an instance: its interfaces are removed and their addresses and MACs released; ' +
      'its connections are terminated, which needs `force` when other instances are connected to its inbounds',
    schema: {
      params: ref,
      querystring: { type: 'object', additionalProperties: false, properties: { force: { type: 'string', enum: ['', 'true', 'false', '1', '0'] } } },
    },
    response: instanceViewSchema,
    errors: [400, 401, 403, 404, 409],
  },
  {
    method: 'GET',
    url: '/instances/:ref/interfaces',
    summary: 'Interfaces of an instance, in NIC order',
    schema: { params: ref },
    response: { type: 'array', items: interfaceViewSchema },
    errors: [400, 401, 404],
  },
  // Hot-plug; the body is checked by validateInterfaceSpec, whose messages name the field.
  { method: 'POST', url: '/instances/:ref/interfaces', summary: 'Add an interface {network, address?, macaddr?} to a running instance', schema: { params: ref, body: { type: 'object' } }, response: interfaceViewSchema, errors: [400, 401, 404, 406, 409, 507] },
  { method: 'DELETE', url: '/interfaces/:uuid', summary: 'Remove an interface; its address and MAC are freed', schema: { params: uuidParam }, response: interfaceViewSchema, errors: [401, 404, 409] },
  {
    method: 'GET',
    url: '/networks/:ref/interfaces',
    summary: 'Interfaces on a network',
    schema: { params: ref },
    response: { type: 'array', items: interfaceViewSchema },
    errors: [400, 401, 404],
  },
  {
    method: 'GET',
    url: '/interfaces/:uuid',
    summary: 'Show an interface',
    schema: { params: uuidParam },
    response: interfaceViewSchema,
    errors: [401, 404],
  },
  ...metadataRoutes('/interfaces/:uuid', uuidParam, uuidKey, 'an interface'),
];

/** The routes this file describes in full (summaries, 200 bodies, error statuses); buildApi registers them. */
export const ALL_ROUTES: RouteDoc[] = [...ROUTES, ...INSTANCE_ROUTES];

const DOCUMENTED = new Map(ALL_ROUTES.map((r) => [`${r.method} ${r.url}`, r]));
const DOC_METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE']);

/**
 * The document entry of a route as fastify registers it (its onRoute hook): the full RouteDoc when this file
 * has one, else one made from the route's own schema and `config.summary`, so routes registered elsewhere
 * (connections, hosts, captures, services) are documented with the schemas that validate them.
 */
export function routeDocOf(route: { method: string | string[]; url: string; schema?: unknown; config?: unknown }): RouteDoc[] {
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  return methods.filter((m) => DOC_METHODS.has(m)).map((m) => {
    const known = DOCUMENTED.get(`${m} ${route.url}`);
    if (known) return known;
    const summary = (route.config as { summary?: string } | undefined)?.summary ?? `${m} ${route.url}`;
    return { method: m as RouteDoc['method'], url: route.url, summary, schema: (route.schema ?? {}) as RouteSchema, response: {}, errors: [] };
  });
}

const ERROR_TEXT: Record<number, string> = {
  400: 'Malformed request',
  401: 'Unauthenticated (no or bad token, or a namespace the caller does not own)',
  403: 'Not allowed on this object',
  404: 'Not found in the caller namespace',
  406: 'Dependencies not ready',
  409: 'Conflict with existing state',
  507: 'Insufficient resources',
};

function toOpenApiPath(url: string): string {
  return url.replace(/:([A-Za-z_]+)/g, '{$1}');
}

function parameters(schema: JsonSchema | undefined, where: 'path' | 'query'): unknown[] {
  if (schema === undefined) return [];
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(properties).map(([name, s]) => ({ name, in: where, required: where === 'path' || required.has(name), schema: s }));
}

/** The OpenAPI 3.0 document of `routes`, assembled from the same schemas fastify validates with. */
export function openApiDocument(routes: readonly RouteDoc[] = ROUTES): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = toOpenApiPath(route.url);
    const responses: Record<string, unknown> = {
      200: { description: 'OK', content: { 'application/json': { schema: route.response } } },
    };
    if (route.errors.length === 0) {
      responses.default = { description: 'Error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    }
    for (const status of route.errors) {
      responses[status] = {
        description: ERROR_TEXT[status] ?? 'Error',
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      };
    }
    const operation: Record<string, unknown> = {
      summary: route.summary,
      parameters: [...parameters(route.schema.params, 'path'), ...parameters(route.schema.querystring, 'query')],
      responses,
    };
    if (route.schema.body !== undefined) {
      operation.requestBody = {
        required: Array.isArray(route.schema.body.required) && route.schema.body.required.length > 0,
        content: { 'application/json': { schema: route.schema.body } },
      };
    }
    (paths[path] ??= {})[route.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.0.3',
    info: { title: 'appnet control API', version: '0.1.0' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { Error: errorSchema, Network: networkViewSchema, Instance: instanceViewSchema, Interface: interfaceViewSchema },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
