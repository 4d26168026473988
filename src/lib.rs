//! Identity filter: verifies JWTs in-process, authorizes the request against the caller's claims,
//! keeps client-sent identity headers from the upstream (stripped, or refused where the host
//! cannot strip) and injects the verified identity. One `wasm32-wasip1`
//! module for Envoy, Istio and Kong (proxy-wasm).
//!
//! The decision is pure Rust with no host calls (every module but `filter`), tested natively;
//! time, randomness and I/O come in as arguments. Only `filter` talks to the host, through a
//! small host interface (`filter::host`) that is bound to proxy-wasm for wasm32 and implemented
//! with Envoy's and Kong's behaviours in the native tests. The request path is
//! [`decide::decide`]:
//!
//! ```text
//! token ─► verify (jwks keys, crypto) ─► identity ─► policy ─► headers + assertion
//!   │          ▲ cache (verified tokens)                         │
//!   │          └─ keystore ◄─ fetch (JWKS URI / OIDC discovery, driven by filter)
//!   └──────────── every failure is a reason: status, WWW-Authenticate, body
//! ```
//!
//! - `config`: the JSON document, strict parsing and validation with field paths.
//! - `token`: where tokens come from (headers with prefix, query, cookie); size limit.
//! - `jwks`: key sets; choosing a key by `kid` among keys of an allowed type.
//! - `crypto`: signature verification primitives (RSA, ECDSA, Ed25519) tuned for wasm32.
//! - `verify`: JWS structure, algorithm allow-list, signature, registered claims.
//! - `cache`: bounded verified-token cache.
//! - `dpop`: DPoP proofs (RFC 9449): the proof checks, key thumbprints, the replay cache.
//! - `keystore`, `fetch`: per-issuer remote key state (fresh, stale, failed), fetch requests
//!   and answers.
//! - `identity`, `claims`: the normalized caller and claim paths.
//! - `mtls`: certificate-bound tokens (RFC 8705): the client certificate from the connection or
//!   a trusted header (`x-forwarded-client-cert`, a PEM header) against the token's `cnf`.
//! - `issuer`: issuer patterns (one `{tenant}` segment) for multi-tenant issuers.
//! - `path`: the canonical form of request paths that rules match.
//! - `policy`: route rules and requirements.
//! - `headers`, `assertion`: headers stripped and set; the signed identity assertion.
//! - `reason`: every failure, its status, `WWW-Authenticate` and body.
//! - `decide`: the request path as one pure function.
//! - `filter`: host glue (root and HTTP contexts, dispatches, metrics, logs, what differs
//!   between Envoy and Kong); `filter::wasm` binds it to proxy-wasm.

pub mod assertion;
pub mod cache;
pub mod claims;
pub mod config;
#[cfg(test)]
mod config_bounds_tests;
pub mod crypto;
pub mod decide;
pub mod dpop;
pub mod fetch;
pub mod headers;
pub mod identity;
pub mod issuer;
pub mod jwks;
pub mod keystore;
pub mod mtls;
pub mod path;
#[cfg(test)]
mod path_decide_tests;
pub mod policy;
pub mod reason;
pub mod token;
pub mod verify;

pub mod filter;

pub use config::{Config, ConfigError};
pub use decide::{decide, Decision, Engine, RequestFacts};
pub use reason::{Denial, Reason};
