//! Identity filter: verifies JWTs in-process, authorizes the request against the caller's claims,
//! keeps client-sent identity headers from the upstream (stripped, or refused where the host
//! cannot strip) and injects the verified identity. One `wasm32-wasip1`
//! module for Envoy, Istio and Kong (proxy-wasm).
//!
//! The decision is pure Rust with no host calls (every module but `filter`), tested natively;
//! time, randomness and I/O come in as arguments. Only `filter` talks to the host, through a
//! small host interface (`filter::host`) that is bound to proxy-wasm for wasm32 and implemented
//! with Envoy's and Kong's behaviours in the native tests. The request path is
//! [`decide()`]:
//!
//! ```text
//! token ─► verify (jwks keys, crypto) ─► identity ─► policy ─► headers + assertion
//!   │          ▲ cache (verified tokens)                         │
//!   │          └─ keystore ◄─ fetch (JWKS URI / OIDC discovery, driven by filter)
//!   └──────────── every failure is a reason: status, WWW-Authenticate, body
//! ```
//!
//! - `config`: the JSON document, strict parsing and validation with field paths; one file per
//!   section (`config/providers.rs`, `config/rules.rs`, ...) with its types, defaults and checks.
//! - `token`: where tokens come from (headers with prefix, query, cookie): one scan returns every
//!   candidate with its location; the size limit, decoding and ambiguity are read from it, and a
//!   token that could not be read is removed at its locations (`headers`).
//! - `percent`: the one percent-decoder (query tokens, URL-encoded certificate headers) and
//!   `%XX` reader (also for `path`).
//! - `jose`: JOSE names shared by `config`, `jwks`, `verify` and `dpop`: the signing algorithms.
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
//!
//! The modules are private (all but `crypto`, whose own modules are), so the compiler reports
//! what nothing uses. The public surface is what callers outside `src/` need, re-exported here
//! so that they do not depend on the module layout:
//! - the configuration and the request path ([`Config`], [`Engine`], [`decide()`],
//!   [`RequestFacts`], [`Decision`], [`Reason`] and the response they render): the fuzz targets
//!   (`fuzz/`) decide requests natively and compare with a reference; `tools/schema-gen` reads
//!   [`Config`]'s JSON Schema for Kong and checks the refusals Kong receives;
//! - key sets and remote keys ([`KeySet`], [`parse_remote_keys`], [`KeyStore`] and its steps):
//!   the `jwks` and `keystore` fuzz targets drive them directly; `crypto-bench`'s `jwks-parse`
//!   times [`KeySet`] parsing;
//! - [`crypto`], the signature primitives: the `crypto_diff` and `bigint_diff` fuzz targets
//!   compare them with RustCrypto's.
//!
//! The host glue (`filter`) has no public item: on wasm32 proxy-wasm calls it (`filter::wasm`).

mod assertion;
mod cache;
mod claims;
mod config;
#[cfg(test)]
mod config_bounds_tests;
pub mod crypto;
mod decide;
mod dpop;
mod fetch;
mod headers;
mod identity;
mod issuer;
mod jose;
mod jwks;
mod keystore;
mod mtls;
mod path;
#[cfg(test)]
mod path_decide_tests;
mod percent;
mod policy;
mod reason;
mod token;
mod verify;

// Natively the glue is driven only by its tests (`filter/tests.rs`), so the rest of a native
// build would count it as dead; on wasm32 proxy-wasm calls it, and its dead code is reported
// (`cargo clippy --target wasm32-wasip1`).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod filter;

pub use config::{Config, ConfigError, Provider};
pub use decide::{
    config_invalid_response, decide, min_rsa_bits, Decision, Engine, KeySource, RequestFacts,
};
pub use fetch::{parse_remote_keys, Answer, FetchError};
pub use headers::HeaderOp;
pub use jose::Algorithm;
pub use jwks::{KeySet, Origin, MAX_RSA_BITS, MIN_RSA_BITS};
pub use keystore::{Completion, Fetched, KeyState, KeyStore, KeyView, Status, Step, Wait};
/// A refusal ([`Denial`]) as the status, headers and body sent to the client.
pub use reason::render as render_denial;
pub use reason::{Denial, Detail, Reason, Response};
/// Finds the request's token in the configured sources ([`Config`]'s `token_sources`).
pub use token::find as find_token;
