//! Identity filter: verifies JWTs in-process, authorizes the request against the caller's claims,
//! strips client-sent identity headers and injects the verified identity. One `wasm32-wasip1`
//! module for Envoy, Istio and Kong (proxy-wasm).
//!
//! The decision is pure Rust with no host calls (every module but `filter`), tested natively.
//! Only `filter` talks to the host and is compiled for wasm32 alone.
//!
//! ```text
//! token ─► (jwks) keys ─► verify ─► policy ─► headers      all driven by decide, failures in reason
//! ```

pub mod assertion;
pub mod cache;
pub mod claims;
pub mod config;
pub mod crypto;
pub mod decide;
pub mod fetch;
pub mod headers;
pub mod identity;
pub mod jwks;
pub mod keystore;
pub mod policy;
pub mod reason;
pub mod token;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod filter;

pub use config::{Config, ConfigError};
pub use decide::{decide, Decision, Engine, RequestFacts};
pub use reason::{Denial, Reason};
