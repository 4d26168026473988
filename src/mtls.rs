//! Certificate-bound access tokens (RFC 8705): a token whose `cnf` holds `x5t#S256` (the
//! base64url SHA-256 of a certificate's DER) is accepted only from a client that presents that
//! certificate. Where the certificate comes from is `client_certificate` (see docs/configuration.md,
//! "Certificate-bound tokens"):
//! - `connection`: the host's own TLS connection. The host glue reads Envoy's attribute
//!   `connection.sha256_peer_certificate_digest` (hex) into [`RequestFacts::peer_certificate`];
//!   Kong's host does not implement that attribute, so there it is [`PeerCertificate::Unavailable`].
//! - `xfcc`: the `Hash=` (or `Cert=`) of the last element of `x-forwarded-client-cert`, the one
//!   the nearest proxy added (Envoy's `SANITIZE_SET` and `APPEND_FORWARD`).
//! - `header`: a configured header carrying the certificate as PEM, URL-encoded or not (nginx
//!   `$ssl_client_escaped_cert`).
//!
//! The check runs on every request (cached tokens included); the result is only a [`Reason`].

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::claims::Claims;
use crate::config::{CertificateBound, CertificateSource, ClientCertificateConfig, Provider};
use crate::identity::{Identity, TokenBinding};
use crate::percent::{self, hex_digit, Plus};
use crate::reason::Reason;
use crate::token::RequestFacts;

/// The header Envoy (and Istio) use for the client certificate of the connection they terminate.
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// Largest certificate header value read (longer: no usable certificate). A PEM certificate is a
/// few KiB; an XFCC header with `Cert=` and `Chain=` of a few proxies stays far below this.
pub const MAX_CERTIFICATE_HEADER_BYTES: usize = 32 * 1024;

/// Largest number of XFCC elements (proxies) read; more is no usable certificate.
pub const MAX_XFCC_ELEMENTS: usize = 16;

/// The certificate of the downstream connection as the host glue found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PeerCertificate {
    /// No certificate, or not read (the source is not `connection`).
    #[default]
    None,
    /// The hex SHA-256 of the certificate's DER, as the host reports it.
    Sha256Hex(String),
    /// The host does not expose the connection's certificate (Kong's ngx_wasm_module).
    Unavailable,
    /// Not read yet: the host glue reads it only when a certificate-bound token needs it
    /// ([`check`]'s `read`). Never read, it counts as unavailable.
    Unread,
}

/// The SHA-256 of the client certificate the request presents, as far as it can be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// None, or none that can be read (a malformed trusted header).
    None,
    Sha256([u8; 32]),
    /// The configured source cannot be read in this host.
    Unavailable,
}

/// The certificate thumbprint a token is bound to: `None` for an unbound token, `Some(None)` for
/// a `cnf["x5t#S256"]` that is not the base64url of 32 bytes (it can match no certificate).
pub fn thumbprint(claims: &Claims) -> Option<Option<[u8; 32]>> {
    let value = claims.get("cnf")?.get("x5t#S256")?;
    let decoded = value.as_str().and_then(|s| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()
    });
    Some(decoded.and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok()))
}

/// Mark a freshly verified identity as certificate-bound when its token says so. The binding is
/// a property of the token (cached with it); [`check`] enforces it on every request.
pub fn bind(identity: &mut Identity) {
    if thumbprint(&identity.claims).is_some() {
        identity.binding = TokenBinding::Mtls;
    }
}

/// Whether the caller's token may be used with this request's certificate. `read` gives the
/// connection's certificate when the facts hold [`PeerCertificate::Unread`]; it is called only
/// for a certificate-bound token.
pub fn check(
    source: &ClientCertificateConfig,
    provider: &Provider,
    who: &Identity,
    facts: &RequestFacts,
    read: &dyn Fn() -> PeerCertificate,
) -> Result<(), Reason> {
    let expected = match thumbprint(&who.claims) {
        None if provider.certificate_bound == CertificateBound::Required => {
            return Err(Reason::CertificateRequired)
        }
        None => return Ok(()),
        Some(None) => return Err(Reason::CertificateMismatch),
        Some(Some(expected)) => expected,
    };
    let read_now;
    let peer = match (&facts.peer_certificate, source.source) {
        (PeerCertificate::Unread, CertificateSource::Connection) => {
            read_now = read();
            &read_now
        }
        (peer, _) => peer,
    };
    match presented_by(source, facts, peer) {
        Presented::Sha256(got) if got == expected => Ok(()),
        Presented::Sha256(_) => Err(Reason::CertificateMismatch),
        Presented::None => Err(Reason::CertificateMissing),
        Presented::Unavailable => Err(Reason::CertificateUnavailable),
    }
}

/// The request's certificate from the configured source (tests).
#[cfg(test)]
pub fn presented(source: &ClientCertificateConfig, facts: &RequestFacts) -> Presented {
    presented_by(source, facts, &facts.peer_certificate)
}

/// The request's certificate from the configured source, with `peer` as the connection's
/// certificate.
fn presented_by(
    source: &ClientCertificateConfig,
    facts: &RequestFacts,
    peer: &PeerCertificate,
) -> Presented {
    let digest = match source.source {
        CertificateSource::Connection => match peer {
            PeerCertificate::None => None,
            PeerCertificate::Sha256Hex(hex) => hex32(hex),
            PeerCertificate::Unavailable | PeerCertificate::Unread => {
                return Presented::Unavailable
            }
        },
        CertificateSource::Xfcc => trusted_value(facts, XFCC_HEADER).and_then(|v| xfcc_sha256(&v)),
        CertificateSource::Header => source
            .header
            .as_deref()
            .and_then(|name| trusted_value(facts, name))
            .and_then(|v| pem_sha256(&v)),
    };
    digest.map_or(Presented::None, Presented::Sha256)
}

/// The name of the header the configuration trusts for the certificate, if any (lower case).
pub fn trusted_header(source: &ClientCertificateConfig) -> Option<String> {
    match source.source {
        CertificateSource::Connection => None,
        CertificateSource::Xfcc => Some(XFCC_HEADER.to_string()),
        CertificateSource::Header => source.header.as_deref().map(str::to_ascii_lowercase),
    }
}

/// Every value of a header joined by `,` (HTTP list semantics), `None` when absent or too long.
fn trusted_value(facts: &RequestFacts, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for value in facts.header_values(name) {
        let joined = out.get_or_insert_with(String::new);
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value);
        if joined.len() > MAX_CERTIFICATE_HEADER_BYTES {
            return None;
        }
    }
    out
}

/// The SHA-256 of the certificate named by the last element of an XFCC value: its `Hash`, else
/// the hash of its `Cert`. `None` when the value is malformed or the element names neither.
pub fn xfcc_sha256(value: &str) -> Option<[u8; 32]> {
    let elements = parse_xfcc(value)?;
    let last = elements.last()?;
    let field = |key: &str| {
        last.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    match field("hash") {
        Some(hash) => hex32(hash),
        None => pem_sha256(field("cert")?),
    }
}

/// Parse an XFCC value: elements separated by `,`, `key=value` pairs by `;`; a value may be
/// double-quoted (then `,`, `;` and `=` are literal and `\"` is a quote). `None` when malformed:
/// an unterminated quote, a pair without `=`, an empty key, text after a closing quote, a key
/// twice in one element, or more than [`MAX_XFCC_ELEMENTS`] elements.
pub fn parse_xfcc(value: &str) -> Option<Vec<Vec<(String, String)>>> {
    let mut elements: Vec<Vec<(String, String)>> = Vec::new();
    let mut element: Vec<(String, String)> = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        // One pair: a key up to `=`, then a bare or quoted value.
        let mut key = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(',' | ';' | '"') | None => return None,
                Some(c) => key.push(c),
            }
        }
        let key = key.trim().to_string();
        if key.is_empty() {
            return None;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => val.push(chars.next()?),
                    Some('"') => break,
                    Some(c) => val.push(c),
                    None => return None,
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c == ';' {
                    break;
                }
                if c == '"' {
                    return None;
                }
                val.push(c);
                chars.next();
            }
            val = val.trim().to_string();
        }
        if element.iter().any(|(k, _)| k.eq_ignore_ascii_case(&key)) {
            return None;
        }
        element.push((key, val));
        match chars.next() {
            Some(';') => {}
            Some(',') => {
                elements.push(std::mem::take(&mut element));
                if elements.len() >= MAX_XFCC_ELEMENTS {
                    return None;
                }
            }
            None => {
                elements.push(element);
                return Some(elements);
            }
            Some(_) => return None,
        }
    }
}

/// The SHA-256 of the DER of a PEM certificate, URL-encoded (`%0A`, `%2B`...) or not. Only the
/// first `CERTIFICATE` block counts (a chain starts with the client's own). `None` when there is
/// no well-formed block.
pub fn pem_sha256(value: &str) -> Option<[u8; 32]> {
    let decoded;
    let text = if value.contains('%') {
        // A `+` stays a `+`: it is a base64 character, not a space.
        decoded = percent::decode(value, Plus::Literal)?;
        decoded.as_str()
    } else {
        value
    };
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN)? + BEGIN.len();
    let rest = text.get(start..)?;
    let body = rest.get(..rest.find(END)?)?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    // A DER certificate is a SEQUENCE.
    if der.first() != Some(&0x30) {
        return None;
    }
    Some(Sha256::digest(&der).into())
}

/// 64 hex digits (either case; `:` separators allowed) as 32 bytes.
fn hex32(text: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (hex_digit(*hi)?, hex_digit(*lo)?),
            _ => return None,
        };
        *slot = hi << 4 | lo;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
