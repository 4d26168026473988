//! `client_certificate`: where the certificate of certificate-bound tokens (RFC 8705) is read.

use schemars::JsonSchema;
use serde::Deserialize;

use super::headers::check_header_name;
use super::{Config, ConfigError};

/// `client_certificate`: where the certificate a certificate-bound token must match is read.
/// Only the source named here is trusted; any other header is ignored.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateConfig {
    /// `connection` (the default): the TLS connection the host terminates (Envoy and Istio:
    /// the attribute `connection.sha256_peer_certificate_digest`; Kong's host does not expose
    /// it, so there certificate-bound tokens are refused with 500 `certificate_unavailable`);
    /// `xfcc`: the `Hash` (else `Cert`) of the last element of `x-forwarded-client-cert`, the
    /// element the nearest proxy added: Envoy's own connection manager with
    /// `forward_client_cert_details: SANITIZE_SET` (or `APPEND_FORWARD`), or a trusted proxy in
    /// front that always replaces the header; `header`: the header named in `header`, carrying
    /// the certificate as PEM, URL-encoded or not (nginx `$ssl_client_escaped_cert`), set by a
    /// trusted TLS terminator that always replaces the client's copy. With `xfcc` and `header`
    /// the header belongs to the filter: it is removed before the request goes upstream.
    #[serde(default)]
    pub source: CertificateSource,
    /// The header with `source: header` (required then, not allowed otherwise). Not a
    /// token-source header, not a header the filter sets.
    #[serde(default)]
    pub header: Option<String>,
}

/// `client_certificate.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// The host's TLS connection.
    #[default]
    Connection,
    /// `x-forwarded-client-cert`, last element.
    Xfcc,
    /// A configured header with a (URL-encoded) PEM certificate.
    Header,
}

impl ClientCertificateConfig {
    /// `client_certificate.header`: set exactly with `source: header`, a valid header name that
    /// is neither a token source nor a header the filter sets.
    pub(super) fn validate(&self, config: &Config) -> Result<(), ConfigError> {
        let at = "client_certificate.header";
        let c = self;
        let name = match (c.source, &c.header) {
            (CertificateSource::Header, Some(name)) => name,
            (CertificateSource::Header, None) => {
                return Err(ConfigError::new(at, "required with `source: header`"))
            }
            (_, Some(_)) => return Err(ConfigError::new(at, "only allowed with `source: header`")),
            (_, None) => return Ok(()),
        };
        check_header_name(name).map_err(|m| ConfigError::new(at, m))?;
        let set_by_filter = config
            .headers
            .claims
            .iter()
            .chain(
                config
                    .providers
                    .iter()
                    .flat_map(|p| p.claim_headers.iter().flatten()),
            )
            .map(|c| c.header.as_str())
            .chain([config.headers.report_header.as_str()])
            .chain(config.headers.assertion.iter().map(|a| a.header.as_str()));
        let tokens = config
            .token_sources
            .iter()
            .filter_map(|t| t.header.as_deref());
        if set_by_filter
            .chain(tokens)
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            return Err(ConfigError::new(
                at,
                format!("`{name}` is already a token source or a header the filter sets"),
            ));
        }
        Ok(())
    }
}
