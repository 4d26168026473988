//! Identity filter: verifies JWTs in-process, authorizes the request against the caller's claims,
//! keeps client-sent identity headers from the upstream (stripped, or refused where the host
//! cannot strip) and injects the verified identity. One `wasm32-wasip1`
//! module for Envoy, Istio and Kong (proxy-wasm).
//!
//! The decision is pure Rust with no host calls (every module but `filter`), tested natively;
//! time, randomness and I/O come in as arguments, and what is remembered between requests (the
//! verified-token and DPoP replay caches, [`Caches`]) is passed in too. Only `filter` talks to
//! the host, through a small host interface (`filter::host`) that is bound to proxy-wasm for
//! wasm32 and implemented with Envoy's and Kong's behaviours in the native tests.
//!
//! A request goes one way through the modules, like Envoy's jwt_authn (extractor,
//! authenticator, verifier and JWKS cache, filter); nothing below calls back up:
//!
//! ```text
//! filter::Request::on_request_headers (gathers RequestFacts)
//!  └► filter::remote_keys (KeyView: the engine's inline keys and the KeyStore)
//!      └► filter::state::decide (the instance's Caches, shared DPoP proofs)
//!          └► decide::decide_with
//!              1. headers: managed headers the client sent, stripped (or refused)
//!              2. policy::select: the rule (path: the canonical path)
//!              3. token::find: the token
//!              4. authenticate::caller: cache ► engine (provider) ► keystore (keys)
//!                 ► verify (jwks, crypto) ► identity ► mtls ► dpop
//!              5. policy::check: what the rule requires
//!              6. headers::claim_headers, assertion::mint_headers; or reason: the denial
//!          ◄ Decision (Allow, Deny, Serve, NeedKeys)
//!  └► filter::answer applies it; NeedKeys: filter::remote_keys waits for the keys (keystore,
//!     fetch) and decides again
//! ```
//!
//! - `config`: the JSON document, strict parsing and validation with field paths; one file per
//!   section (`config/providers.rs`, `config/rules.rs`, ...) with its types, defaults and checks.
//! - `engine`: the configuration parsed once (inline key sets, the issuer index, the managed
//!   headers, the assertion signer, how denials render), like Envoy's `filter_config`.
//! - `decide`: policy to decision, one pure function: the rule, the caller, what the rule
//!   requires, then the header changes or the denial ([`Decision`]).
//! - `policy`, `path`: route rules and requirements; the canonical request path rules match.
//! - `authenticate`: who calls: the verified-token cache (`cache`), the provider the token's
//!   `iss` names (`engine`, `issuer` for `{tenant}` patterns), its keys (a [`KeySource`]), the
//!   signature and registered claims (`verify`), then the certificate binding (`mtls`, RFC 8705)
//!   and the DPoP proof (`dpop`, RFC 9449).
//! - `keystore`: where the request path reads keys ([`KeySource`], [`KeyState`]): inline sets,
//!   and per-issuer remote key state (fresh, stale, failed) with its fetch requests; `fetch`
//!   reads their answers.
//! - `token`: the request's facts ([`RequestFacts`]); where tokens come from (headers with
//!   prefix, query, cookie): one scan returns every candidate with its location; the size
//!   limit, decoding and ambiguity are read from it, and a token that could not be read is
//!   removed at its locations (`headers`).
//! - `percent`: the one percent-decoder (query tokens, URL-encoded certificate headers) and
//!   `%XX` reader (also for `path`).
//! - `jose`: JOSE names shared by `config`, `jwks`, `verify` and `dpop`: the signing algorithms.
//! - `jwks`: key sets; choosing a key by `kid` among keys of an allowed type.
//! - `crypto`: the signature crate `identity-crypto` (crates/crypto: RSA, ECDSA, Ed25519, HMAC
//!   tuned for wasm32) through its verifier traits, with the backend its `rustcrypto` feature
//!   selects.
//! - `verify`: JWS structure, algorithm allow-list, signature, registered claims.
//! - `cache`: bounded verified-token cache.
//! - `dpop`: DPoP proofs: the proof checks, key thumbprints, the replay cache.
//! - `identity`, `claims`: the normalized caller and claim paths.
//! - `mtls`: certificate-bound tokens: the client certificate from the connection or a trusted
//!   header (`x-forwarded-client-cert`, a PEM header) against the token's `cnf`.
//! - `issuer`: issuer patterns (one `{tenant}` segment) for multi-tenant issuers.
//! - `headers`, `assertion`: headers stripped and set (claim headers); the signed identity
//!   assertion and the headers that carry it.
//! - `reason`: every failure, its status, `WWW-Authenticate` and body.
//! - `filter`: host glue, one way down: `filter` (root and HTTP contexts, request facts) ─►
//!   `filter::remote_keys` (fetches the key store asks for, waiting requests) ─►
//!   `filter::state` (what requests share, the host's profile, deciding with the caches) and
//!   `filter::answer` (applying a decision: headers, local answer, counters, decision log);
//!   `filter::wasm` binds it to proxy-wasm.
//!
//! The modules are private, so the compiler reports
//! what nothing uses. The public surface is what callers outside `src/` need, re-exported here
//! so that they do not depend on the module layout:
//! - the configuration and the request path ([`Config`], [`Engine`], [`Caches`], [`decide()`],
//!   [`RequestFacts`], [`Decision`], [`Reason`] and the response they render): the fuzz targets
//!   (`fuzz/`) decide requests natively and compare with a reference; `tools/schema-gen` reads
//!   [`Config`]'s JSON Schema for Kong and checks the refusals Kong receives;
//! - key sets and remote keys ([`KeySet`], [`parse_remote_keys`], [`KeyStore`] and its steps,
//!   [`KeySource`], [`KeyView`]): the `jwks` and `keystore` fuzz targets drive them directly;
//!   `crypto-bench`'s `jwks-parse` times [`KeySet`] parsing.
//!
//! The signature primitives are their own crate (`identity-crypto`, crates/crypto): the
//! `crypto_diff` and `bigint_diff` fuzz targets and crypto-bench use it directly.
//!
//! The host glue (`filter`) has no public item: on wasm32 proxy-wasm calls it (`filter::wasm`).

mod assertion;
mod authenticate;
mod cache;
mod claims;
mod config;
#[cfg(test)]
mod config_bounds_tests;
mod crypto;
mod decide;
mod dpop;
mod engine;
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

pub use authenticate::Caches;
pub use config::{Config, ConfigError, Provider};
pub use decide::{decide, decide_with_keys, Decision};
pub use engine::{config_invalid_response, min_rsa_bits, Engine};
pub use fetch::{parse_remote_keys, Answer, FetchError};
pub use headers::HeaderOp;
pub use jose::Algorithm;
pub use jwks::{KeySet, Origin, MAX_RSA_BITS, MIN_RSA_BITS};
pub use keystore::{
    Completion, Fetched, KeySource, KeyState, KeyStore, KeyView, Status, Step, Wait,
};
/// A refusal ([`Denial`]) as the status, headers and body sent to the client.
pub use reason::render as render_denial;
pub use reason::{Denial, Detail, Reason, Response};
/// Finds the request's token in the configured sources ([`Config`]'s `token_sources`).
pub use token::find as find_token;
pub use token::RequestFacts;
