//! Fetching remote keys, without the host: where a JWKS or discovery document is, the request
//! that gets it, and what an answer means (status, size, JSON, `Cache-Control: max-age`, the
//! discovery document's `issuer` and `jwks_uri`). The host glue sends the request with
//! `dispatch_http_call` and hands the answer back here.

use serde_json::Value;

use crate::jwks::{KeySet, Origin};

/// Where a document is fetched from: the `:authority` and `:path` of an absolute `http(s)` URL.
/// The scheme is not sent: TLS, if any, is the upstream's (Envoy cluster, Kong `host:port`) job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub path: String,
}

impl Target {
    /// Parse an absolute `http://` or `https://` URL. The fragment is dropped; user info is refused.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("`{url}` is not an absolute http(s) URL"))?;
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        if authority.contains('@') {
            return Err(format!("`{url}`: user info is not allowed"));
        }
        let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if !printable(authority) || !printable(path) {
            return Err(format!("`{url}` contains spaces or control characters"));
        }
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Target {
            authority: authority.to_string(),
            path,
        })
    }

    /// The OIDC discovery document of an issuer: `<issuer>/.well-known/openid-configuration`.
    pub fn discovery(issuer: &str) -> Result<Target, String> {
        Target::parse(&format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))
    }

    /// The headers of the GET request for this target.
    pub fn request_headers(&self) -> Vec<(&str, &str)> {
        vec![
            (":method", "GET"),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
            ("accept", "application/json"),
            ("user-agent", "identity-filter"),
        ]
    }
}

/// Most JSON tokens (values and string escapes) a fetched document (JWKS or discovery) may
/// hold. Reading JSON costs per value and per escape far more than per plain byte (in wasm32,
/// 256 KiB of `[0,0,...]` took 6.5 ms, 1 MiB of `\u0041` escapes 6.5 ms, 1 MiB of plain string
/// 1.5 ms), so they are counted first, in one pass over the bytes. A JWKS of
/// [`crate::jwks::MAX_KEYS`] keys with certificate chains has about 2,000; a discovery document
/// a few hundred.
pub const MAX_JSON_TOKENS: usize = 10_000;

/// An upper estimate of the values and escapes in a JSON text, without parsing it: one, plus
/// every `,` `[` `{` outside strings and every `\` escape inside them.
pub fn json_tokens(body: &[u8]) -> usize {
    let mut count = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
                count += 1;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b',' | b'[' | b'{') {
            count += 1;
        }
    }
    count
}

/// Why a fetch failed. The codes are metric labels and log words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The host refused to start the call (unknown cluster, bad upstream).
    Dispatch,
    /// No answer: connection failure, reset or timeout reported by the host (Envoy: no
    /// headers; Kong 3.9+: a `:dispatch_status` pseudo-header naming the reason).
    Network(String),
    /// The host never called back within the fetch timeout (plus a grace period).
    Timeout,
    /// An answer whose status is not 200.
    Status(u32),
    /// A body larger than `max_response_bytes`.
    TooLarge(usize),
    /// A body that is not a JSON object.
    NotJson,
    /// A body with more JSON values and escapes than `MAX_JSON_TOKENS` (counted before
    /// parsing).
    TooComplex(usize),
    /// A JWKS without a single usable key.
    NoUsableKeys(String),
    /// A discovery document whose `issuer` is not the configured one.
    IssuerMismatch(String),
    /// A discovery document without a usable `jwks_uri`.
    NoJwksUri,
}

impl FetchError {
    /// Every code, for metric definitions.
    pub const CODES: [&'static str; 10] = [
        "dispatch",
        "network",
        "timeout",
        "status",
        "too_large",
        "not_json",
        "no_usable_keys",
        "issuer_mismatch",
        "no_jwks_uri",
        "too_complex",
    ];

    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Dispatch => "dispatch",
            FetchError::Network(_) => "network",
            FetchError::Timeout => "timeout",
            FetchError::Status(_) => "status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::NotJson => "not_json",
            FetchError::NoUsableKeys(_) => "no_usable_keys",
            FetchError::IssuerMismatch(_) => "issuer_mismatch",
            FetchError::NoJwksUri => "no_jwks_uri",
            FetchError::TooComplex(_) => "too_complex",
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Dispatch => write!(
                f,
                "the host refused to dispatch the call (check `upstream`)"
            ),
            FetchError::Network(why) if why.is_empty() => {
                write!(f, "no answer (connection failure, reset or timeout)")
            }
            FetchError::Network(why) => write!(f, "no answer ({why})"),
            FetchError::Timeout => write!(f, "no answer within the fetch timeout"),
            FetchError::Status(s) => write!(f, "answered HTTP {s}"),
            FetchError::TooLarge(n) => write!(f, "answer of {n} bytes is over max_response_bytes"),
            FetchError::NotJson => write!(f, "answer is not a JSON object"),
            FetchError::NoUsableKeys(why) => write!(f, "no usable key in the JWKS ({why})"),
            FetchError::IssuerMismatch(got) => write!(f, "discovery document names issuer `{got}`"),
            FetchError::NoJwksUri => write!(f, "discovery document has no usable `jwks_uri`"),
            FetchError::TooComplex(n) => write!(
                f,
                "answer has about {n} JSON values and escapes; at most {MAX_JSON_TOKENS} are read"
            ),
        }
    }
}

/// An answer as the host delivered it.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// `:status`, if the answer had headers at all.
    pub status: Option<u32>,
    /// Kong's `:dispatch_status` pseudo-header on a failed call (`ok`, on answered calls, is
    /// not kept).
    pub dispatch_status: Option<String>,
    pub cache_control: Option<String>,
    /// Size the host announced for the body.
    pub body_size: usize,
    /// The body, read only when the size is within the limit.
    pub body: Vec<u8>,
}

impl Answer {
    /// Build from the answer's headers (any case) and the announced body size.
    pub fn from_headers(headers: &[(String, Vec<u8>)], body_size: usize) -> Answer {
        let mut answer = Answer {
            body_size,
            ..Answer::default()
        };
        for (name, value) in headers {
            let text = || String::from_utf8_lossy(value).trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                ":status" => answer.status = text().parse().ok(),
                // Kong 3.9+: `ok` on an answered call, the failure's name otherwise.
                ":dispatch_status" => {
                    let v = text();
                    if !v.eq_ignore_ascii_case("ok") {
                        answer.dispatch_status = Some(v);
                    }
                }
                "cache-control" => {
                    let v = text();
                    answer.cache_control = Some(match answer.cache_control.take() {
                        Some(prev) => format!("{prev}, {v}"),
                        None => v,
                    });
                }
                _ => {}
            }
        }
        answer
    }

    /// Status and size checks that come before reading the body.
    pub fn check(&self, max_bytes: usize) -> Result<(), FetchError> {
        if let Some(why) = &self.dispatch_status {
            return Err(FetchError::Network(why.clone()));
        }
        match self.status {
            None => Err(FetchError::Network(String::new())),
            Some(200) => {
                if self.body_size > max_bytes || self.body.len() > max_bytes {
                    Err(FetchError::TooLarge(self.body_size.max(self.body.len())))
                } else {
                    Ok(())
                }
            }
            Some(s) => Err(FetchError::Status(s)),
        }
    }

    fn json_object(&self) -> Result<Value, FetchError> {
        let values = json_tokens(&self.body);
        if values > MAX_JSON_TOKENS {
            return Err(FetchError::TooComplex(values));
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(v) if v.is_object() => Ok(v),
            _ => Err(FetchError::NotJson),
        }
    }

    /// The `jwks_uri` of a discovery document, checked against the configured issuer.
    pub fn discovered_jwks(&self, max_bytes: usize, issuer: &str) -> Result<Target, FetchError> {
        self.check(max_bytes)?;
        let doc = self.json_object()?;
        let named = doc
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if named != issuer {
            return Err(FetchError::IssuerMismatch(
                named.chars().take(200).collect(),
            ));
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or(FetchError::NoJwksUri)?;
        Target::parse(uri).map_err(|_| FetchError::NoJwksUri)
    }

    /// The key set of a JWKS answer and its raw JSON (for sharing between workers).
    /// RSA keys shorter than `min_rsa_bits` are skipped (see [`KeySet::weak_keys`]).
    pub fn key_set(
        &self,
        max_bytes: usize,
        min_rsa_bits: usize,
    ) -> Result<(KeySet, Value), FetchError> {
        self.check(max_bytes)?;
        let doc = self.json_object()?;
        let set = parse_remote_keys(&doc, min_rsa_bits)?;
        Ok((set, doc))
    }

    /// `max-age` of `Cache-Control`, in seconds (`no-cache`/`no-store` count as 0).
    pub fn max_age(&self) -> Option<u64> {
        self.cache_control.as_deref().and_then(max_age)
    }
}

/// A fetched (or shared) JWKS document as a key set: unusable keys (and RSA keys shorter than
/// `min_rsa_bits`) are skipped, and a set without a usable key is an error.
pub fn parse_remote_keys(doc: &Value, min_rsa_bits: usize) -> Result<KeySet, FetchError> {
    let set = KeySet::parse_with(doc, Origin::Remote, min_rsa_bits).map_err(|e| {
        let at = if e.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", e.path)
        };
        FetchError::NoUsableKeys(format!("{at}{}", e.message))
    })?;
    if set.is_empty() {
        return Err(FetchError::NoUsableKeys(
            "no key of a supported type".into(),
        ));
    }
    Ok(set)
}

/// `max-age` of a `Cache-Control` value, in seconds; `no-cache` and `no-store` count as 0.
pub fn max_age(cache_control: &str) -> Option<u64> {
    let mut found = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(0);
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            if let Ok(n) = value.trim_matches('"').parse::<u64>() {
                found = Some(found.map_or(n, |m: u64| m.min(n)));
            }
        }
    }
    found
}

/// The refresh interval in seconds: `max-age` clamped to `[min, max]`, or `max` without one.
pub fn refresh_interval(max_age: Option<u64>, min: u64, max: u64) -> u64 {
    max_age.unwrap_or(max).clamp(min.min(max), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Option<u32>, body: &str) -> Answer {
        Answer {
            status,
            body_size: body.len(),
            body: body.as_bytes().to_vec(),
            ..Answer::default()
        }
    }

    #[test]
    fn json_values_and_escapes_are_counted() {
        assert_eq!(json_tokens(b"{}"), 2);
        assert_eq!(json_tokens(br#"{"keys":[{"kty":"EC"},{"a":"x,[{"}]}"#), 6);
        assert_eq!(json_tokens(br#"{"a":"\",","b":1}"#), 4);
        assert_eq!(json_tokens(br#"["\u0041\u0042"]"#), 4);
        assert_eq!(json_tokens(b"[0,0,0,0]"), 5);
    }

    #[test]
    fn a_body_with_too_many_json_tokens_is_too_complex() {
        let pad = vec!["0"; MAX_JSON_TOKENS].join(",");
        let body = format!(r#"{{"keys":[],"pad":[{pad}]}}"#);
        assert_eq!(
            answer(Some(200), &body)
                .key_set(1 << 20, crate::jwks::MIN_RSA_BITS)
                .unwrap_err(),
            FetchError::TooComplex(MAX_JSON_TOKENS + 4)
        );
        assert_eq!(FetchError::TooComplex(1).code(), "too_complex");
    }

    #[test]
    fn a_body_within_the_value_budget_is_read() {
        let pad = vec!["0"; MAX_JSON_TOKENS - 10].join(",");
        let body = format!(r#"{{"keys":[],"pad":[{pad}]}}"#);
        // Parsed (and then refused for having no key, not for its size).
        assert!(matches!(
            answer(Some(200), &body).key_set(1 << 20, crate::jwks::MIN_RSA_BITS),
            Err(FetchError::NoUsableKeys(_))
        ));
    }

    #[test]
    fn target_splits_authority_and_path() {
        let t = Target::parse("https://idp.test:8443/realms/x/certs?v=1#frag").unwrap();
        assert_eq!(t.authority, "idp.test:8443");
        assert_eq!(t.path, "/realms/x/certs?v=1");
        assert_eq!(Target::parse("http://idp.test").unwrap().path, "/");
        assert_eq!(Target::parse("http://idp.test?x").unwrap().path, "/?x");
    }

    #[test]
    fn target_refuses_non_http_urls() {
        for bad in [
            "idp.test/keys",
            "ftp://idp.test/",
            "https:///keys",
            "https://u:p@idp.test/",
            "https://idp.test/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn discovery_target_is_under_well_known() {
        let t = Target::discovery("https://idp.test/realms/x/").unwrap();
        assert_eq!(t.path, "/realms/x/.well-known/openid-configuration");
        assert_eq!(t.authority, "idp.test");
    }

    #[test]
    fn request_has_the_pseudo_headers_hosts_require() {
        let t = Target::parse("https://idp.test/keys").unwrap();
        let h = t.request_headers();
        for name in [":method", ":path", ":authority"] {
            assert!(h.iter().any(|(n, _)| *n == name), "{name}");
        }
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(max_age("public, max-age=300"), Some(300));
        assert_eq!(max_age("Max-Age=\"60\", must-revalidate"), Some(60));
        assert_eq!(max_age("no-store"), Some(0));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn refresh_interval_is_clamped() {
        assert_eq!(refresh_interval(Some(5), 60, 600), 60);
        assert_eq!(refresh_interval(Some(86400), 60, 600), 600);
        assert_eq!(refresh_interval(Some(120), 60, 600), 120);
        assert_eq!(refresh_interval(None, 60, 600), 600);
    }

    #[test]
    fn failed_calls_are_network_errors() {
        assert_eq!(
            answer(None, "").check(10),
            Err(FetchError::Network(String::new()))
        );
        let headers = vec![(":dispatch_status".to_string(), b"timeout".to_vec())];
        let a = Answer::from_headers(&headers, 0);
        assert_eq!(a.check(10), Err(FetchError::Network("timeout".into())));
    }

    #[test]
    fn kongs_dispatch_status_ok_is_an_answer_not_a_failure() {
        let headers = vec![
            (":dispatch_status".to_string(), b"ok".to_vec()),
            (":status".to_string(), b"200".to_vec()),
        ];
        let body = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        let mut a = Answer::from_headers(&headers, body.len());
        a.body = body.as_bytes().to_vec();
        assert_eq!(a.dispatch_status, None);
        assert_eq!(a.check(1000), Ok(()));
        let failed = vec![(
            ":dispatch_status".to_string(),
            b"broken connection".to_vec(),
        )];
        assert_eq!(
            Answer::from_headers(&failed, 0).check(1000),
            Err(FetchError::Network("broken connection".into()))
        );
    }

    #[test]
    fn non_200_too_large_and_not_json_are_refused() {
        assert_eq!(
            answer(Some(500), "{}").check(10),
            Err(FetchError::Status(500))
        );
        assert_eq!(
            answer(Some(200), "{\"keys\":[]}").check(4),
            Err(FetchError::TooLarge(11))
        );
        assert_eq!(
            answer(Some(200), "<html>")
                .key_set(100, crate::jwks::MIN_RSA_BITS)
                .err(),
            Some(FetchError::NotJson)
        );
        assert_eq!(
            answer(Some(200), "[1]")
                .key_set(100, crate::jwks::MIN_RSA_BITS)
                .err(),
            Some(FetchError::NotJson)
        );
    }

    #[test]
    fn headers_are_read_case_insensitively() {
        let headers = vec![
            (":status".to_string(), b"200".to_vec()),
            ("Cache-Control".to_string(), b"max-age=42".to_vec()),
        ];
        let a = Answer::from_headers(&headers, 3);
        assert_eq!(a.status, Some(200));
        assert_eq!(a.max_age(), Some(42));
        assert_eq!(a.body_size, 3);
    }

    #[test]
    fn discovery_issuer_must_match() {
        let doc = r#"{"issuer":"https://evil.test","jwks_uri":"https://idp.test/keys"}"#;
        assert_eq!(
            answer(Some(200), doc)
                .discovered_jwks(1000, "https://idp.test")
                .err(),
            Some(FetchError::IssuerMismatch("https://evil.test".into()))
        );
        let doc = r#"{"issuer":"https://idp.test","jwks_uri":"https://idp.test/keys"}"#;
        let t = answer(Some(200), doc)
            .discovered_jwks(1000, "https://idp.test")
            .unwrap();
        assert_eq!(t.path, "/keys");
        let doc = r#"{"issuer":"https://idp.test"}"#;
        assert_eq!(
            answer(Some(200), doc)
                .discovered_jwks(1000, "https://idp.test")
                .err(),
            Some(FetchError::NoJwksUri)
        );
        let doc = r#"{"issuer":"https://idp.test","jwks_uri":"/relative"}"#;
        assert_eq!(
            answer(Some(200), doc)
                .discovered_jwks(1000, "https://idp.test")
                .err(),
            Some(FetchError::NoJwksUri)
        );
    }

    #[test]
    fn a_jwks_without_usable_keys_is_refused() {
        let e = answer(Some(200), r#"{"keys":[]}"#)
            .key_set(1000, crate::jwks::MIN_RSA_BITS)
            .err();
        assert!(matches!(e, Some(FetchError::NoUsableKeys(_))), "{e:?}");
    }
}
