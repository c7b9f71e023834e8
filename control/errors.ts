// Typed API errors. Each carries the HTTP status the REST layer answers with and renders as the
// body Shaken Fist clients expect: `{"error": <message or object>, "status": <code>}`.
//
// The statuses and their meanings follow the reference client's exception mapping:
//   400 Malformed (bad input: parse, size, host bits, overlap, unknown parameter)
//   401 Unauthenticated (acting on a namespace the caller does not own)
//   403 Unauthorized (the thing exists but may not be done: delete the floating network, in-use)
//   404 NotFound
//   406 DependenciesNotReady (the network is not `created` yet, or lacks a feature)
//   409 Conflict (address already reserved, VNI taken, illegal state transition)
//   507 InsufficientResources (no free address or VNI)
//
// Messages are written for an operator: they name the field and the offending value, and where
// there is an obvious fix they say what it is.

/** The JSON body of every error response. `error` is usually a message, sometimes an object. */
import { StoreError } from './store/store.ts';
export interface ErrorBody {
  error: string | Record<string, unknown>;
  status: number;
}

export interface ApiErrorOptions {
  /** Short machine-readable cause (e.g. `host-bits`), for callers and tests; not sent to clients. */
  reason?: string;
  /** Replaces the message as the body's `error` value, e.g. the 403 `{deleted, unable}` object. */
  detail?: Record<string, unknown>;
}

export class ApiError extends Error {
  readonly status: number;
  readonly reason: string | undefined;
  readonly detail: Record<string, unknown> | undefined;

  constructor(status: number, message: string, options: ApiErrorOptions = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.reason = options.reason;
    this.detail = options.detail;
  }

  /** The response body, `{error, status}`. */
  toBody(): ErrorBody {
    return { error: this.detail ?? this.message, status: this.status };
  }

  toJSON(): ErrorBody {
    return this.toBody();
  }
}

/** 400: the request cannot be acted on as written. */
export class BadRequest extends ApiError {
  constructor(message: string, options?: ApiErrorOptions) {
    super(400, message, options);
    this.name = 'BadRequest';
  }
}

/** 401: the caller may not act on that namespace. */
export class Unauthenticated extends ApiError {
  constructor(message: string, options?: ApiErrorOptions) {
    super(401, message, options);
    this.name = 'Unauthenticated';
  }
}

/** 403: the object exists but this operation on it is not allowed. */
export class Forbidden extends ApiError {
  constructor(message: string, options?: ApiErrorOptions) {
    super(403, message, options);
    this.name = 'Forbidden';
  }
}

/** 404: no such object visible to the caller. */
export class NotFound extends ApiError {
  constructor(message: string, options?: ApiErrorOptions) {
    super(404, message, options);
    this.name = 'NotFound';
  }
}

/** 406: the object is not in a state (or does not have the feature) this operation needs. */
export class NotReady extends ApiError {
  constructor(message: string, options?: ApiErrorOptions) {
    super(406, message, options);
    this.name = 'NotReady';
  }
}

/** 409: the request collides with existing state. */
export class Conflict extends ApiError {
  constructor(message: string, options?: ApiErrorOptions) {
    super(409, message, options);
    this.name = 'Conflict';
  }
}

/** 507: a pool (addresses, VNIs) is exhausted. */
export class InsufficientResources extends ApiError {
  constructor(message: string, options?: ApiErrorOptions) {
    super(507, message, options);
    this.name = 'InsufficientResources';
  }
}

export function isApiError(e: unknown): e is ApiError {
  return e instanceof ApiError;
}

/** Store failures a client can act on, by StoreError code (control/store/store.ts): the store's message is for them. */
const STORE_STATUS: Record<string, number> = { EUNAVAILABLE: 503, ENOSPACE: 507, EINVAL: 400 };

/**
 * The body for any thrown value: an ApiError renders itself; the store being away is a 503 that says so
 * (`store unavailable: ...`), a full store 507, a request the store cannot take 400; anything else is a 500
 * whose message does not leak internals (log the original at the call site).
 */
export function errorBody(e: unknown): ErrorBody {
  if (isApiError(e)) return e.toBody();
  if (e instanceof StoreError && STORE_STATUS[e.code] !== undefined) return { error: e.message, status: STORE_STATUS[e.code] };
  return { error: 'internal error', status: 500 };
}

/** Quote a client-supplied value for a message: strings in quotes, others as JSON, long ones cut. */
export function quote(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    // A BigInt or a cycle makes JSON.stringify throw; String() throws too for an object without a prototype.
    try {
      text = String(value);
    } catch {
      text = Object.prototype.toString.call(value);
    }
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
