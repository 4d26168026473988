// A real OpenID provider (oidc-provider, pinned in package.json) for the tests, on 127.0.0.1.
//
//   node server.mjs CONFIG        CONFIG: a JSON file, or the JSON text itself ("{...}")
//   node server.mjs < CONFIG.json  without an argument the configuration is read from stdin
//
// Prints one line to stdout once it listens, then only logs to stderr:
//   {"ready":true,"port":41234,"issuer":"http://127.0.0.1:41234","control":"/_control"}
//
// The configuration (every field optional; tools/oidc_provider.py writes it):
//   port             0 (default): a free port chosen by the kernel
//   alg              signing algorithm of the access tokens: RS256 (default), PS256, ES256, ES384, EdDSA
//   jwks_max_age     seconds: `Cache-Control: public, max-age=N` on the JWKS; null (default): none
//   exit_with_stdin  true: exit when stdin reaches its end (the parent is gone); default false
//   default_resource resource indicator used when a token request names none; default: none
//                    (such a token is opaque, which the tests never want)
//   resources        {"<resource indicator>": {"scope": "a b", "audience": "<aud>" (default: the
//                    indicator), "access_token_ttl": seconds (default 300)}}
//   clients          [{"client_id", "client_secret" (client_secret_basic) or "jwks" (its public
//                    keys: private_key_jwt), "token_endpoint_auth_method" (default from the two),
//                    "token_endpoint_auth_signing_alg" (private_key_jwt; default: any allowed),
//                    "scope": "allowed scopes" (default: any), "extra_claims": {...},
//                    "tls_client_certificate_bound_access_tokens": true (RFC 8705: its tokens
//                    carry cnf["x5t#S256"] of the certificate it presents; default false)}]
//   client_certificate_header  the request header that carries a client's certificate, PEM,
//                    URL-encoded (as a TLS-terminating proxy forwards it: nginx's
//                    $ssl_client_escaped_cert, Envoy's XFCC Cert=); default "x-client-cert".
//                    This server speaks plain HTTP on 127.0.0.1, so the certificate a client
//                    binds its tokens to comes in this header.
//
// Sender-constrained tokens: DPoP (RFC 9449) is on: a token request with a `DPoP` proof gets a
// token with cnf.jkt (`token_type: DPoP`); server nonces are not used. Certificate-bound tokens
// (RFC 8705) for the clients that ask for them, as above.
//
// What it serves: discovery (/.well-known/openid-configuration), the JWKS (/jwks) and the token
// endpoint (/token) with the client-credentials grant. Access tokens are JWTs (`typ: at+jwt`)
// for the requested resource (RFC 8707): `aud` is the resource server's audience, `sub` and
// `client_id` the client, `scope` the granted scopes (requested ∩ the resource's); a client's
// `extra_claims` are added (oidc-provider keeps its own claims: an extra claim never replaces
// `sub`, `aud`, `iss`, ...). Clients authenticate with client_secret_basic, client_secret_post
// or private_key_jwt (RFC 7523; `aud` = the issuer or the token endpoint).
//
// Control, for tests only (JSON in and out, under /_control on the same port):
//   GET    /_control/state           {"issuer", "signing_kid", "kids", "alg", "jwks_max_age"}
//   POST   /_control/keys            {"kid"?, "alg"?} → a new key, published after the others
//                                    (tokens are still signed with the current key) → {"kid"}
//   POST   /_control/keys/KID/sign   tokens are signed with KID from now on (it moves first)
//   DELETE /_control/keys/KID        KID leaves the JWKS (409 for the signing key)
//   PUT    /_control/jwks-max-age    {"seconds": N | null}
//   PUT    /_control/clients/ID/extra-claims   {...}: the client's extra claims from now on
//
// Zero-downtime rotation is the three steps in order, with time between them for relying
// parties to refetch: publish (POST /keys), sign (POST /keys/KID/sign), drop the old key.
// oidc-provider fixes its key store when a Provider is built, so each key change builds a new
// Provider behind the same HTTP server; requests already running finish on the old one.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// stdout carries only the ready line: oidc-provider's notices (console.info) go to stderr too.
console.info = console.error;
console.log = console.error;

const CONTROL = '/_control';
const JWKS_PATH = '/jwks';
const DEFAULT_TTL = 300;

function log(...parts) {
  process.stderr.write(`${new Date().toISOString()} ${parts.join(' ')}\n`);
}

function readConfig() {
  const arg = process.argv[2];
  let text;
  if (arg === undefined || arg === '-') {
    text = fs.readFileSync(0, 'utf8');
  } else if (arg.trimStart().startsWith('{')) {
    text = arg;
  } else {
    text = fs.readFileSync(arg, 'utf8');
  }
  const config = JSON.parse(text);
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError('the configuration must be a JSON object');
  }
  return config;
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

const KEY_TYPES = {
  RS256: ['rsa', { modulusLength: 2048 }],
  PS256: ['rsa', { modulusLength: 2048 }],
  ES256: ['ec', { namedCurve: 'P-256' }],
  ES384: ['ec', { namedCurve: 'P-384' }],
  EdDSA: ['ed25519', {}],
};

let keyCounter = 0;

function newKey(alg, kid) {
  const spec = KEY_TYPES[alg];
  if (!spec) {
    throw new TypeError(`unsupported alg ${JSON.stringify(alg)} (one of ${Object.keys(KEY_TYPES).join(', ')})`);
  }
  keyCounter += 1;
  const { privateKey } = crypto.generateKeyPairSync(spec[0], spec[1]);
  return { ...privateKey.export({ format: 'jwk' }), kid: kid ?? `key-${keyCounter}`, alg, use: 'sig' };
}

// ---------------------------------------------------------------------------------------------
// State (changed by the control endpoints) and the Provider built from it
// ---------------------------------------------------------------------------------------------

const config = readConfig();
const state = {
  alg: config.alg ?? 'RS256',
  keys: [], // private JWKs; the first is the signing key
  jwksMaxAge: config.jwks_max_age ?? null,
  extraClaims: new Map(),
  resources: config.resources ?? {},
  clients: config.clients ?? [],
};
state.keys.push(newKey(state.alg));
for (const client of state.clients) {
  if (client.extra_claims) state.extraClaims.set(client.client_id, client.extra_claims);
}
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

function clientMetadata(client) {
  const method = client.token_endpoint_auth_method
    ?? (client.jwks ? 'private_key_jwt' : 'client_secret_basic');
  const metadata = {
    client_id: client.client_id,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: method,
  };
  if (client.client_secret !== undefined) metadata.client_secret = client.client_secret;
  if (client.jwks !== undefined) metadata.jwks = client.jwks;
  if (client.token_endpoint_auth_signing_alg !== undefined) {
    metadata.token_endpoint_auth_signing_alg = client.token_endpoint_auth_signing_alg;
  }
  if (client.scope !== undefined) metadata.scope = client.scope;
  if (client.tls_client_certificate_bound_access_tokens) {
    metadata.tls_client_certificate_bound_access_tokens = true;
  }
  return metadata;
}

// Every scope a resource or a client names: a client's `scope` may only list known scopes.
function allScopes() {
  const scopes = new Set(['openid']);
  for (const resource of Object.values(state.resources)) {
    for (const s of (resource.scope ?? '').split(' ')) if (s) scopes.add(s);
  }
  for (const client of state.clients) {
    for (const s of (client.scope ?? '').split(' ')) if (s) scopes.add(s);
  }
  return [...scopes];
}

function buildProvider(issuer) {
  const signingKid = state.keys[0].kid;
  const provider = new Provider(issuer, {
    clients: state.clients.map(clientMetadata),
    jwks: { keys: state.keys },
    scopes: allScopes(),
    cookies: { keys: cookieKeys },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    // Every client's default ID token algorithm must be one the key store serves.
    clientDefaults: { id_token_signed_response_alg: state.alg },
    enabledJWA: { idTokenSigningAlgValues: Object.keys(KEY_TYPES) },
    ttl: {
      // Only tokens without a resource (opaque) use it; resource servers set their own.
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? DEFAULT_TTL,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: { enabled: true },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        getCertificate: (ctx) => {
          const escaped = ctx.get(config.client_certificate_header ?? 'x-client-cert');
          if (!escaped) return undefined;
          try {
            return decodeURIComponent(escaped);
          } catch {
            return undefined;
          }
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => config.default_resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator) => {
          const resource = state.resources[indicator];
          if (!resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return {
            scope: resource.scope ?? '',
            audience: resource.audience ?? indicator,
            accessTokenTTL: resource.access_token_ttl ?? DEFAULT_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: state.alg, kid: signingKid } },
          };
        },
      },
    },
    extraTokenClaims: async (ctx, token) => {
      const claims = state.extraClaims.get(token.clientId);
      return claims ? structuredClone(claims) : undefined;
    },
  });
  provider.use(async (ctx, next) => {
    if (ctx.path === JWKS_PATH && state.jwksMaxAge !== null) {
      ctx.set('cache-control', `public, max-age=${state.jwksMaxAge}`);
    }
    await next();
    log(ctx.method, ctx.path, ctx.status);
  });
  provider.on('server_error', (ctx, error) => log('server_error', error.stack ?? error));
  provider.on('grant.error', (ctx, error) => log('grant.error', error.message, error.error_description ?? ''));
  return { provider, handler: provider.callback() };
}

// ---------------------------------------------------------------------------------------------
// Control endpoints
// ---------------------------------------------------------------------------------------------

class ControlError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ControlError(400, `body is not JSON: ${error.message}`);
  }
}

function findKey(kid) {
  const index = state.keys.findIndex((key) => key.kid === kid);
  if (index < 0) throw new ControlError(404, `no key ${JSON.stringify(kid)}`);
  return index;
}

function publicState() {
  return {
    issuer: current.issuer,
    alg: state.alg,
    signing_kid: state.keys[0].kid,
    kids: state.keys.map((key) => key.kid),
    jwks_max_age: state.jwksMaxAge,
  };
}

async function control(req, path) {
  const method = req.method;
  const parts = path.slice(CONTROL.length).split('/').filter(Boolean).map(decodeURIComponent);
  if (method === 'GET' && parts.length === 1 && parts[0] === 'state') {
    return publicState();
  }
  if (parts[0] === 'keys') {
    if (method === 'POST' && parts.length === 1) {
      const body = await readJson(req);
      if (body.kid !== undefined && state.keys.some((key) => key.kid === body.kid)) {
        throw new ControlError(409, `key ${JSON.stringify(body.kid)} exists`);
      }
      let key;
      try {
        key = newKey(body.alg ?? state.alg, body.kid);
      } catch (error) {
        throw new ControlError(400, error.message);
      }
      state.keys.push(key);
      rebuild(`published ${key.kid}`);
      return { kid: key.kid, ...publicState() };
    }
    if (method === 'POST' && parts.length === 3 && parts[2] === 'sign') {
      const index = findKey(parts[1]);
      const [key] = state.keys.splice(index, 1);
      state.keys.unshift(key);
      state.alg = key.alg;
      rebuild(`signing with ${key.kid}`);
      return publicState();
    }
    if (method === 'DELETE' && parts.length === 2) {
      const index = findKey(parts[1]);
      if (index === 0) throw new ControlError(409, `${parts[1]} is the signing key`);
      state.keys.splice(index, 1);
      rebuild(`dropped ${parts[1]}`);
      return publicState();
    }
  }
  if (method === 'PUT' && parts.length === 1 && parts[0] === 'jwks-max-age') {
    const { seconds } = await readJson(req);
    if (seconds !== null && !(Number.isSafeInteger(seconds) && seconds >= 0)) {
      throw new ControlError(400, 'seconds must be a non-negative integer or null');
    }
    state.jwksMaxAge = seconds;
    return publicState();
  }
  if (method === 'PUT' && parts.length === 3 && parts[0] === 'clients' && parts[2] === 'extra-claims') {
    if (!state.clients.some((client) => client.client_id === parts[1])) {
      throw new ControlError(404, `no client ${JSON.stringify(parts[1])}`);
    }
    const claims = await readJson(req);
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
      throw new ControlError(400, 'extra claims must be a JSON object');
    }
    state.extraClaims.set(parts[1], claims);
    return { client_id: parts[1], extra_claims: claims };
  }
  throw new ControlError(404, `no control ${method} ${path}`);
}

// ---------------------------------------------------------------------------------------------
// The HTTP server: control requests here, everything else to the current Provider
// ---------------------------------------------------------------------------------------------

let current = null; // { issuer, provider, handler }

function rebuild(why) {
  const built = buildProvider(current.issuer);
  current = { issuer: current.issuer, ...built };
  log('provider rebuilt:', why, `(signing ${state.keys[0].kid}, jwks ${state.keys.map((k) => k.kid).join(',')})`);
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path === CONTROL || path.startsWith(`${CONTROL}/`)) {
    control(req, path).then(
      (body) => { log('control', req.method, path, 200); send(res, 200, body); },
      (error) => {
        const status = error instanceof ControlError ? error.status : 500;
        log('control', req.method, path, status, error.message);
        send(res, status, { error: error.message });
      },
    );
    return;
  }
  current.handler(req, res);
});
server.keepAliveTimeout = 30_000;

server.listen(config.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  current = { issuer, ...buildProvider(issuer) };
  log(`listening on ${issuer}, signing with ${state.keys[0].kid} (${state.alg})`);
  process.stdout.write(`${JSON.stringify({ ready: true, port, issuer, control: CONTROL })}\n`);
});

function stop(signal) {
  log(`stopping (${signal})`);
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
if (config.exit_with_stdin && process.argv[2] !== undefined && process.argv[2] !== '-') {
  process.stdin.on('end', () => stop('stdin closed'));
  process.stdin.on('error', () => stop('stdin error'));
  process.stdin.resume();
}
