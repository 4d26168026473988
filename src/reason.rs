//! Every way a request can be refused: one enum, one fixed message each, and the single place
//! where a failure becomes an HTTP status, a `WWW-Authenticate` header and a body.

use serde::Serialize;

/// How much a denial tells the client (`errors.detail`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    /// No body at all; the reason header is still sent.
    None,
    /// A JSON body with the reason code only.
    #[default]
    Reason,
    /// A JSON body with the reason code and a one-line human message.
    Message,
}

/// A stable reason code. The string forms are a contract with clients, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    TokenMissing,
    TokenMalformed,
    TokenTooLarge,
    TokenAmbiguous,
    TokenExpired,
    TokenNotYetValid,
    TokenTooOld,
    AlgorithmNotAllowed,
    KeyNotFound,
    SignatureInvalid,
    IssuerUnknown,
    AudienceMismatch,
    ClaimMissing,
    Forbidden,
    InsufficientScope,
    KeysUnavailable,
    ConfigInvalid,
    IdentityHeaderSpoofed,
    PathNotCanonical,
    CertificateMissing,
    CertificateMismatch,
    CertificateRequired,
    CertificateUnavailable,
    DpopProofMissing,
    DpopProofInvalid,
    DpopProofReplayed,
    DpopKeyMismatch,
    DpopAthMismatch,
    DpopRequired,
}

/// What kind of answer a reason produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 401, `error="invalid_token"` (or no error attribute when no token was sent, RFC 6750 §3.1).
    Unauthenticated,
    /// 403, `error="insufficient_scope"`.
    Forbidden,
    /// 503: no key set can be had for the issuer.
    Unavailable,
    /// 500: the filter's own configuration is broken, or asks what this host cannot give.
    Internal,
    /// 400: the request itself is not acceptable (a spoofed identity header, a path that
    /// cannot be matched safely).
    BadRequest,
}

impl Reason {
    /// Every reason, for tests and metric definitions.
    pub const ALL: [Reason; 29] = [
        Reason::TokenMissing,
        Reason::TokenMalformed,
        Reason::TokenTooLarge,
        Reason::TokenAmbiguous,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::TokenTooOld,
        Reason::AlgorithmNotAllowed,
        Reason::KeyNotFound,
        Reason::SignatureInvalid,
        Reason::IssuerUnknown,
        Reason::AudienceMismatch,
        Reason::ClaimMissing,
        Reason::Forbidden,
        Reason::InsufficientScope,
        Reason::KeysUnavailable,
        Reason::ConfigInvalid,
        Reason::IdentityHeaderSpoofed,
        Reason::PathNotCanonical,
        Reason::CertificateMissing,
        Reason::CertificateMismatch,
        Reason::CertificateRequired,
        Reason::CertificateUnavailable,
        Reason::DpopProofMissing,
        Reason::DpopProofInvalid,
        Reason::DpopProofReplayed,
        Reason::DpopKeyMismatch,
        Reason::DpopAthMismatch,
        Reason::DpopRequired,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TokenMissing => "token_missing",
            Reason::TokenMalformed => "token_malformed",
            Reason::TokenTooLarge => "token_too_large",
            Reason::TokenAmbiguous => "token_ambiguous",
            Reason::TokenExpired => "token_expired",
            Reason::TokenNotYetValid => "token_not_yet_valid",
            Reason::TokenTooOld => "token_too_old",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::KeyNotFound => "key_not_found",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::IssuerUnknown => "issuer_unknown",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::ClaimMissing => "claim_missing",
            Reason::Forbidden => "forbidden",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::ConfigInvalid => "config_invalid",
            Reason::IdentityHeaderSpoofed => "identity_header_spoofed",
            Reason::PathNotCanonical => "path_not_canonical",
            Reason::CertificateMissing => "certificate_missing",
            Reason::CertificateMismatch => "certificate_mismatch",
            Reason::CertificateRequired => "certificate_required",
            Reason::CertificateUnavailable => "certificate_unavailable",
            Reason::DpopProofMissing => "dpop_proof_missing",
            Reason::DpopProofInvalid => "dpop_proof_invalid",
            Reason::DpopProofReplayed => "dpop_proof_replayed",
            Reason::DpopKeyMismatch => "dpop_key_mismatch",
            Reason::DpopAthMismatch => "dpop_ath_mismatch",
            Reason::DpopRequired => "dpop_required",
        }
    }

    /// The fixed one-line message shown with `errors.detail = "message"`.
    pub fn message(self) -> &'static str {
        match self {
            Reason::TokenMissing => "no bearer token was found in the request",
            Reason::TokenMalformed => "the token is not a well-formed compact JWS",
            Reason::TokenTooLarge => "the token is larger than the configured maximum",
            Reason::TokenAmbiguous => "more than one different token was sent",
            Reason::TokenExpired => "the token has expired",
            Reason::TokenNotYetValid => "the token is not valid yet",
            Reason::TokenTooOld => "the token's lifetime exceeds the allowed maximum",
            Reason::AlgorithmNotAllowed => "the token's signing algorithm is not allowed",
            Reason::KeyNotFound => "no key of the issuer matches the token",
            Reason::SignatureInvalid => "the token's signature does not verify",
            Reason::IssuerUnknown => "the token's issuer is not trusted",
            Reason::AudienceMismatch => "the token is not meant for this audience",
            Reason::ClaimMissing => "the token lacks a required claim",
            Reason::Forbidden => "the caller is not allowed to make this request",
            Reason::InsufficientScope => "the token lacks a required scope",
            Reason::KeysUnavailable => "the issuer's keys are unavailable; retry later",
            Reason::ConfigInvalid => "the identity filter is misconfigured",
            Reason::IdentityHeaderSpoofed => {
                "the request carries an identity header only the gateway may set"
            }
            Reason::PathNotCanonical => "the request path cannot be matched safely",
            Reason::CertificateMissing => {
                "the token is bound to a client certificate and none was presented"
            }
            Reason::CertificateMismatch => {
                "the token is bound to another client certificate than the one presented"
            }
            Reason::CertificateRequired => "the issuer's tokens must be bound to a certificate",
            Reason::CertificateUnavailable => {
                "the gateway cannot read client certificates from this connection"
            }
            Reason::DpopProofMissing => "the DPoP-bound token came without a DPoP proof",
            Reason::DpopProofInvalid => "the DPoP proof is not valid for this request",
            Reason::DpopProofReplayed => "the DPoP proof was already used",
            Reason::DpopKeyMismatch => "the token is not bound to the DPoP proof's key",
            Reason::DpopAthMismatch => "the DPoP proof is not for this access token",
            Reason::DpopRequired => "a DPoP-bound token sent with the DPoP scheme is required",
        }
    }

    pub fn class(self) -> Class {
        match self {
            Reason::Forbidden | Reason::InsufficientScope => Class::Forbidden,
            Reason::KeysUnavailable => Class::Unavailable,
            Reason::ConfigInvalid | Reason::CertificateUnavailable => Class::Internal,
            Reason::IdentityHeaderSpoofed => Class::BadRequest,
            Reason::PathNotCanonical => Class::BadRequest,
            _ => Class::Unauthenticated,
        }
    }

    /// The RFC 9449 §7.1 error of a DPoP refusal, answered with the `DPoP` scheme: the proof is
    /// the problem (`invalid_dpop_proof`), or the token is (`invalid_token`: bound to another
    /// key, or not DPoP-bound where that is required, or sent with the `Bearer` scheme).
    pub fn dpop_error(self) -> Option<&'static str> {
        match self {
            Reason::DpopProofMissing
            | Reason::DpopProofInvalid
            | Reason::DpopProofReplayed
            | Reason::DpopAthMismatch => Some("invalid_dpop_proof"),
            Reason::DpopKeyMismatch | Reason::DpopRequired => Some("invalid_token"),
            _ => None,
        }
    }

    pub fn status(self) -> u32 {
        match self.class() {
            Class::Unauthenticated => 401,
            Class::Forbidden => 403,
            Class::Unavailable => 503,
            Class::Internal => 500,
            Class::BadRequest => 400,
        }
    }
}

/// A denial as it leaves the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    /// The rule that denied, when a rule did (403s); named in the reason header.
    pub rule: Option<String>,
    /// Scopes that would have satisfied the rule (for `insufficient_scope`).
    pub scopes: Vec<String>,
    /// For a DPoP refusal: the proof algorithms accepted (`algs` of the `DPoP` challenge).
    pub algs: Vec<&'static str>,
}

impl Denial {
    pub fn new(reason: Reason) -> Self {
        Denial {
            reason,
            rule: None,
            scopes: Vec::new(),
            algs: Vec::new(),
        }
    }

    pub fn by_rule(reason: Reason, rule: &str) -> Self {
        Denial {
            reason,
            rule: Some(rule.to_string()),
            scopes: Vec::new(),
            algs: Vec::new(),
        }
    }
}

/// A fully rendered local response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Seconds a client should wait before retrying a `keys_unavailable` answer.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// A denial's JSON body, its members in name order (`error`, `message`, `rule`, `status`), written
/// straight from borrowed strings (no `serde_json::Value` built per denial).
#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    status: u32,
}

/// Render a denial: status, `WWW-Authenticate`, reason header and (per `detail`) a JSON body.
pub fn render(
    denial: &Denial,
    detail: Detail,
    realm: Option<&str>,
    reason_header: &str,
) -> Response {
    let reason = denial.reason;
    let mut headers = Vec::new();
    let reason_value = match &denial.rule {
        Some(rule) => format!("{}; rule={}", reason.code(), rule),
        None => reason.code().to_string(),
    };
    headers.push((reason_header.to_string(), reason_value));
    if let Some(value) = www_authenticate(denial, detail, realm) {
        headers.push(("www-authenticate".to_string(), value));
    }
    if reason.class() == Class::Unavailable {
        headers.push(("retry-after".to_string(), RETRY_AFTER_SECONDS.to_string()));
    }
    headers.push(("cache-control".to_string(), "no-store".to_string()));
    let body = match detail {
        Detail::None => Vec::new(),
        Detail::Reason | Detail::Message => {
            let message = detail == Detail::Message;
            let body = Body {
                error: reason.code(),
                message: message.then(|| reason.message()),
                rule: denial.rule.as_deref().filter(|_| message),
                status: reason.status(),
            };
            // Strings and a number: serializing cannot fail.
            serde_json::to_vec(&body).unwrap_or_default()
        }
    };
    if !body.is_empty() {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    Response {
        status: reason.status(),
        headers,
        body,
    }
}

/// The RFC 6750 challenge for a denial, if it gets one.
fn www_authenticate(denial: &Denial, detail: Detail, realm: Option<&str>) -> Option<String> {
    let mut params: Vec<String> = Vec::new();
    if let Some(realm) = realm {
        params.push(format!("realm=\"{}\"", quote_safe(realm)));
    }
    if let Some(error) = denial.reason.dpop_error() {
        params.push(format!("error=\"{error}\""));
        if detail == Detail::Message {
            params.push(format!("error_description=\"{}\"", denial.reason.message()));
        }
        if !denial.algs.is_empty() {
            params.push(format!("algs=\"{}\"", denial.algs.join(" ")));
        }
        return Some(format!("DPoP {}", params.join(", ")));
    }
    match denial.reason.class() {
        Class::Unauthenticated => {
            // RFC 6750 §3.1: a request without credentials gets no error code.
            if denial.reason != Reason::TokenMissing {
                params.push("error=\"invalid_token\"".to_string());
                if detail == Detail::Message {
                    params.push(format!("error_description=\"{}\"", denial.reason.message()));
                }
            }
        }
        Class::Forbidden => {
            params.push("error=\"insufficient_scope\"".to_string());
            if !denial.scopes.is_empty() {
                let scopes: Vec<String> = denial.scopes.iter().map(|s| quote_safe(s)).collect();
                params.push(format!("scope=\"{}\"", scopes.join(" ")));
            }
        }
        Class::BadRequest if denial.reason == Reason::IdentityHeaderSpoofed => {
            params.push("error=\"invalid_request\"".to_string())
        }
        Class::Unavailable | Class::Internal | Class::BadRequest => return None,
    }
    if params.is_empty() {
        Some("Bearer".to_string())
    } else {
        Some(format!("Bearer {}", params.join(", ")))
    }
}

/// Keep only characters that are safe inside a quoted-string of a header value.
fn quote_safe(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_body_is_the_json_object_of_its_members_in_name_order() {
        let rules = [None, Some("admins"), Some("a \"quoted\" \\ rule\u{1}é")];
        for reason in Reason::ALL {
            for rule in rules {
                for detail in [Detail::Reason, Detail::Message] {
                    let mut denial = Denial::new(reason);
                    denial.rule = rule.map(str::to_string);
                    let mut expected = serde_json::Map::new();
                    expected.insert("error".into(), reason.code().into());
                    expected.insert("status".into(), reason.status().into());
                    if detail == Detail::Message {
                        expected.insert("message".into(), reason.message().into());
                        if let Some(rule) = rule {
                            expected.insert("rule".into(), rule.into());
                        }
                    }
                    let expected = serde_json::Value::Object(expected).to_string();
                    let body = render(&denial, detail, None, "x-identity-reason").body;
                    assert_eq!(
                        String::from_utf8(body).unwrap(),
                        expected,
                        "{reason:?} {detail:?}"
                    );
                }
                let denial = Denial::new(reason);
                assert!(render(&denial, Detail::None, None, "x").body.is_empty());
            }
        }
    }

    #[test]
    fn every_code_is_unique_and_snake_case() {
        let mut codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
        for code in codes {
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn serde_form_equals_code() {
        for reason in Reason::ALL {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.code()));
        }
    }

    #[test]
    fn missing_token_challenge_has_no_error_attribute() {
        let r = render(
            &Denial::new(Reason::TokenMissing),
            Detail::Reason,
            Some("api"),
            "x-identity-reason",
        );
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer realm=\"api\""));
        assert_eq!(header(&r, "x-identity-reason"), Some("token_missing"));
    }

    #[test]
    fn expired_token_is_invalid_token() {
        let r = render(
            &Denial::new(Reason::TokenExpired),
            Detail::Message,
            None,
            "x-identity-reason",
        );
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer error=\"invalid_token\", error_description=\"the token has expired\"")
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "token_expired");
        assert_eq!(body["message"], "the token has expired");
    }

    #[test]
    fn insufficient_scope_names_scopes_and_rule() {
        let mut d = Denial::by_rule(Reason::InsufficientScope, "runs");
        d.scopes = vec!["runs:write".into()];
        let r = render(&d, Detail::Reason, None, "x-identity-reason");
        assert_eq!(r.status, 403);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer error=\"insufficient_scope\", scope=\"runs:write\"")
        );
        assert_eq!(
            header(&r, "x-identity-reason"),
            Some("insufficient_scope; rule=runs")
        );
    }

    #[test]
    fn keys_unavailable_is_503_with_retry_after_and_no_challenge() {
        let r = render(
            &Denial::new(Reason::KeysUnavailable),
            Detail::None,
            None,
            "x-identity-reason",
        );
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("5"));
        assert_eq!(header(&r, "www-authenticate"), None);
        assert!(r.body.is_empty());
        assert_eq!(header(&r, "content-type"), None);
    }

    #[test]
    fn config_invalid_is_500() {
        let r = render(
            &Denial::new(Reason::ConfigInvalid),
            Detail::Reason,
            None,
            "x-identity-reason",
        );
        assert_eq!(r.status, 500);
        assert_eq!(header(&r, "content-type"), Some("application/json"));
    }

    #[test]
    fn path_not_canonical_is_400_without_a_challenge() {
        let r = render(
            &Denial::new(Reason::PathNotCanonical),
            Detail::Reason,
            Some("api"),
            "x-identity-reason",
        );
        assert_eq!(r.status, 400);
        assert_eq!(header(&r, "x-identity-reason"), Some("path_not_canonical"));
        assert_eq!(header(&r, "www-authenticate"), None);
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
    }

    #[test]
    fn dpop_refusals_challenge_with_the_dpop_scheme_and_its_algorithms() {
        let mut d = Denial::new(Reason::DpopProofReplayed);
        d.algs = vec!["ES256", "EdDSA"];
        let r = render(&d, Detail::Reason, Some("api"), "x-identity-reason");
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("DPoP realm=\"api\", error=\"invalid_dpop_proof\", algs=\"ES256 EdDSA\"")
        );
        assert_eq!(header(&r, "x-identity-reason"), Some("dpop_proof_replayed"));
        let mut d = Denial::new(Reason::DpopKeyMismatch);
        d.algs = vec!["ES256"];
        let r = render(&d, Detail::None, None, "x-identity-reason");
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("DPoP error=\"invalid_token\", algs=\"ES256\"")
        );
        for reason in Reason::ALL {
            let dpop = reason.code().starts_with("dpop_");
            assert_eq!(reason.dpop_error().is_some(), dpop, "{reason:?}");
            if dpop {
                assert_eq!(reason.status(), 401);
            }
        }
    }

    #[test]
    fn realm_quotes_are_dropped() {
        let r = render(
            &Denial::new(Reason::TokenMissing),
            Detail::None,
            Some("a\"b\\c\n"),
            "x-r",
        );
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer realm=\"abc\""));
    }
}
