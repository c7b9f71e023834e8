// API tokens: JWTs (HS256) issued by POST /auth and accepted by every appnetd on the store.
//
// Signing keys live in the store (/appnet/auth/jwt-keys/<kid>, 32 random bytes each), so any
// daemon verifies what another issued. The newest key signs; once it is older than `rotateSeconds`
// the next issuer makes a new one (a create-only txn: two daemons rotating at once both succeed,
// which is harmless). A key is deleted once it is older than rotation + token lifetime, when no
// token it signed can still be valid. Retiring every key (DELETE /auth/signing-keys) revokes every
// token at once.
//
// A token names its namespace (`sub`) and the key it was obtained with (`key`): it stops working
// when that key or namespace is deleted, not only when it expires.
import { randomBytes } from 'node:crypto';
import { SignJWT, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { Store } from '../store/store.ts';
import { type AuthState, JWT_KEYS_PREFIX, type SigningKeyRecord } from './auth-state.ts';

export const ISSUER = 'appnet';
export const DEFAULT_TOKEN_SECONDS = 15 * 60;
export const DEFAULT_ROTATE_SECONDS = 60 * 60;
/** Verified tokens remembered (the oldest forgotten first). */
const VERIFIED_MAX = 10_000;

export interface TokenOptions {
  /** Lifetime of an issued token (default 15 min). */
  tokenSeconds?: number;
  /** Age after which a new signing key is made (default 1 h). */
  rotateSeconds?: number;
  now?: () => number;
}

export interface TokenClaims {
  namespace: string;
  keyName: string;
}

/** Why a token was refused, for the 401 message (never the key material). */
export class TokenError extends Error {}

export class TokenIssuer {
  readonly tokenSeconds: number;
  readonly rotateSeconds: number;
  readonly #now: () => number;

  constructor(private readonly store: Store, private readonly state: AuthState, o: TokenOptions = {}) {
    this.tokenSeconds = o.tokenSeconds ?? DEFAULT_TOKEN_SECONDS;
    this.rotateSeconds = o.rotateSeconds ?? DEFAULT_ROTATE_SECONDS;
    this.#now = o.now ?? Date.now;
  }

  async issue(claims: TokenClaims): Promise<{ access_token: string; expires_in: number }> {
    const key = await this.#currentKey();
    const now = Math.floor(this.#now() / 1000);
    const access_token = await new SignJWT({ key: claims.keyName })
      .setProtectedHeader({ alg: 'HS256', kid: key.kid, typ: 'JWT' })
      .setIssuer(ISSUER)
      .setSubject(claims.namespace)
      .setIssuedAt(now)
      .setExpirationTime(now + this.tokenSeconds)
      .sign(Buffer.from(key.secret, 'base64'));
    return { access_token, expires_in: this.tokenSeconds };
  }

  /**
   * The claims of a valid token; TokenError saying why otherwise. A token verified once is
   * remembered until its expiry (at most VERIFIED_MAX of them), so a client's requests after the
   * first cost a map lookup, not an HMAC; retiring its signing key still refuses it at once.
   */
  async verify(token: string): Promise<TokenClaims> {
    const known = this.#verified.get(token);
    if (known && known.exp * 1000 > this.#now() && this.state.signingKeys.has(known.kid)) return known.claims;
    if (known) this.#verified.delete(token);
    return this.#verifyJwt(token);
  }

  readonly #verified = new Map<string, { claims: TokenClaims; exp: number; kid: string }>();

  async #verifyJwt(token: string): Promise<TokenClaims> {
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw new TokenError('the bearer token is not valid: it is neither a configured token nor a JWT');
    }
    const key = kid === undefined ? undefined : this.state.signingKeys.get(kid);
    if (!key) throw new TokenError('the token was signed with a key this cluster does not hold (forged, or its key was retired)');
    try {
      const { payload } = await jwtVerify(token, Buffer.from(key.secret, 'base64'), {
        algorithms: ['HS256'],
        issuer: ISSUER,
        currentDate: new Date(this.#now()),
      });
      if (typeof payload.sub !== 'string' || typeof payload.key !== 'string' || typeof payload.exp !== 'number') throw new TokenError('the token names no namespace, key or expiry');
      const claims = { namespace: payload.sub, keyName: payload.key };
      if (this.#verified.size >= VERIFIED_MAX) this.#verified.delete(this.#verified.keys().next().value as string);
      this.#verified.set(token, { claims, exp: payload.exp, kid: key.kid });
      return claims;
    } catch (e) {
      if (e instanceof TokenError) throw e;
      if (e instanceof joseErrors.JWTExpired) throw new TokenError('the token has expired: POST /auth for a new one');
      if (e instanceof joseErrors.JWSSignatureVerificationFailed) throw new TokenError('the token signature does not verify');
      throw new TokenError(`the token is not valid: ${(e as Error).message}`);
    }
  }

  /** Deletes every signing key: every issued token fails from now on. Returns how many were retired. */
  async retireAll(): Promise<number> {
    const { deleted } = await this.store.deletePrefix(JWT_KEYS_PREFIX);
    await this.state.refresh();
    return deleted;
  }

  async #currentKey(): Promise<SigningKeyRecord> {
    const now = this.#now();
    const newest = [...this.state.signingKeys.values()].sort((a, b) => b.created - a.created)[0];
    if (newest && now - newest.created < this.rotateSeconds * 1000) return newest;
    const rec: SigningKeyRecord = { kid: `${now.toString(36)}-${randomBytes(6).toString('hex')}`, secret: randomBytes(32).toString('base64'), created: now };
    const path = JWT_KEYS_PREFIX + rec.kid;
    // Retire keys that can no longer have signed an unexpired token.
    const retire = [...this.state.signingKeys.values()]
      .filter((k) => now - k.created > (this.rotateSeconds + this.tokenSeconds) * 1000 + 60_000)
      .map((k) => ({ type: 'delete' as const, key: JWT_KEYS_PREFIX + k.kid }));
    await this.store.txn({
      compare: [{ key: path, target: 'createRevision', op: '==', value: 0 }],
      success: [{ type: 'put', key: path, value: JSON.stringify(rec) }, ...retire],
    });
    await this.state.refresh();
    return rec;
  }
}
