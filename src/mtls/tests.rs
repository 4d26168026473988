use super::*;
use serde_json::json;

/// [`super::check`] with facts that hold the certificate already (never read).
fn check(
    source: &ClientCertificateConfig,
    provider: &Provider,
    who: &Identity,
    facts: &RequestFacts,
) -> Result<(), Reason> {
    super::check(source, provider, who, facts, &|| {
        panic!("the certificate was in the facts")
    })
}

/// A self-signed P-256 certificate (subject `CN=client,O=a;b`) and the SHA-256 of its DER,
/// computed outside this code (`openssl x509 -outform der | sha256sum`).
const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBgjCCASmgAwIBAgIUOhmSD6vyYsFjjcDIbmfJQGpx6XwwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMY2xpZW50LE89YTtiMB4XDTI2MTIwNjAwMDkzMVoXDTM2MTIw
MzAwMDkzMVowFzEVMBMGA1UEAwwMY2xpZW50LE89YTtiMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEnci4GTB/zASczuVfZuHCk0ctZxjpM1HKZ0lfFN7Wc0ScvTo7
iO34iJwGNltwKwc/wHdz5eDe8NvipssryO+CLqNTMFEwHQYDVR0OBBYEFAgP8rBi
9owR48z3o5lYVoVKvTX/MB8GA1UdIwQYMBaAFAgP8rBi9owR48z3o5lYVoVKvTX/
MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgEKabCbB3U/cJvzr2
rOjgQF0mHvKfhT/DG3vncOOUZnECIEKitwCi6+lNHp8spFiHMg2qvtXwDUHx+iYj
PbAFc3Zn
-----END CERTIFICATE-----
";
const HEX: &str = "07456eb1c06dc90693bd7f42dd282a1b95467ace748e82361529ce83c4bbbd00";
/// The same digest as `x5t#S256` (base64url, no padding).
const X5T: &str = "B0VuscBtyQaTvX9C3SgqG5VGes50joI2FSnOg8S7vQA";
const OTHER_HEX: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

fn digest() -> [u8; 32] {
    hex32(HEX).unwrap()
}

/// URL-encoding as Envoy's XFCC `Cert=` and nginx's `$ssl_client_escaped_cert` do it.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn pem_plain_and_url_encoded_hash_to_the_der_digest() {
    assert_eq!(pem_sha256(PEM), Some(digest()));
    assert_eq!(pem_sha256(&url_encode(PEM)), Some(digest()));
    // Lower-case escapes, CRLF line ends, a chain after the leaf: the leaf counts.
    let crlf = PEM.replace('\n', "\r\n");
    let lower_escapes: String = crlf
        .bytes()
        .map(|b| match b {
            b'\r' | b'\n' | b'+' | b'/' | b'=' => format!("%{b:02x}"),
            _ => (b as char).to_string(),
        })
        .collect();
    assert_eq!(pem_sha256(&lower_escapes), Some(digest()));
    assert_eq!(pem_sha256(&crlf), Some(digest()));
    let chain = format!("{PEM}{}", PEM.replace("MIIBgjCC", "MIIBgjCD"));
    assert_eq!(pem_sha256(&chain), Some(digest()));
}

#[test]
fn broken_pem_is_no_certificate() {
    for bad in [
        "",
        "MIIBgjCC",
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----",
        // Valid base64 that is not a DER sequence.
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        "%ZZ-----BEGIN CERTIFICATE-----",
        "%E2%28%A1",
    ] {
        assert_eq!(pem_sha256(bad), None, "{bad:?}");
    }
    // A truncated escape at the very end.
    assert_eq!(pem_sha256(&format!("{}%2", url_encode(PEM))), None);
}

#[test]
fn xfcc_elements_pairs_and_quoted_values() {
    let v = format!(
        "By=spiffe://a;Hash={OTHER_HEX};Subject=\"CN=x,O=a;b\",By=spiffe://b;Hash={HEX};Subject=\"CN=\\\"q\\\"\";URI=spiffe://c"
    );
    let parsed = parse_xfcc(&v).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0][2], ("Subject".into(), "CN=x,O=a;b".into()));
    assert_eq!(parsed[1][2], ("Subject".into(), "CN=\"q\"".into()));
    assert_eq!(parsed[1][3], ("URI".into(), "spiffe://c".into()));
    // The last element (the nearest proxy's) decides.
    assert_eq!(xfcc_sha256(&v), Some(digest()));
    let reversed = format!("Hash={HEX},Hash={OTHER_HEX}");
    assert_eq!(xfcc_sha256(&reversed), hex32(OTHER_HEX));
}

#[test]
fn xfcc_hash_wins_over_cert_and_cert_is_used_without_hash() {
    let cert = url_encode(PEM);
    assert_eq!(
        xfcc_sha256(&format!("By=x;Cert=\"{cert}\"")),
        Some(digest())
    );
    assert_eq!(
        xfcc_sha256(&format!("Hash={OTHER_HEX};Cert=\"{cert}\"")),
        hex32(OTHER_HEX)
    );
    // Keys are case-insensitive, hex digits either case.
    assert_eq!(
        xfcc_sha256(&format!("hash={}", HEX.to_uppercase())),
        Some(digest())
    );
}

#[test]
fn malformed_xfcc_is_no_certificate() {
    let many = vec![format!("Hash={HEX}"); MAX_XFCC_ELEMENTS + 1].join(",");
    for bad in [
        String::new(),
        "Hash".to_string(),
        format!("=x;Hash={HEX}"),
        format!("Hash=\"{HEX}"),
        format!("Hash=\"{HEX}\"x"),
        format!("Hash={HEX};Hash={OTHER_HEX}"),
        format!("Hash={HEX},"),
        format!("Hash={HEX};;"),
        format!("Ha\"sh={HEX}"),
        "Hash=ab\"cd".to_string(),
        "Hash=0745".to_string(),
        format!("Hash={HEX}00"),
        format!("By=x,Hash={HEX};Subject=a,By=y"),
        many,
    ] {
        assert_eq!(xfcc_sha256(&bad), None, "{bad:?}");
    }
    // Up to the limit is fine.
    let limit = vec![format!("Hash={HEX}"); MAX_XFCC_ELEMENTS - 1].join(",");
    assert_eq!(xfcc_sha256(&limit), Some(digest()));
}

fn source(v: serde_json::Value) -> ClientCertificateConfig {
    serde_json::from_value(v).unwrap()
}

fn facts(headers: &[(&str, &str)], peer: PeerCertificate) -> RequestFacts {
    RequestFacts {
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        peer_certificate: peer,
        ..RequestFacts::default()
    }
}

#[test]
fn only_the_configured_source_is_read() {
    let xfcc = format!("Hash={HEX}");
    let pem = url_encode(PEM);
    let all = [
        ("x-forwarded-client-cert", xfcc.as_str()),
        ("x-client-cert", pem.as_str()),
    ];
    let peer = PeerCertificate::Sha256Hex(OTHER_HEX.into());
    let conn = source(json!({}));
    assert_eq!(
        presented(&conn, &facts(&all, PeerCertificate::None)),
        Presented::None,
        "headers are not trusted with source connection"
    );
    assert_eq!(
        presented(&conn, &facts(&all, peer.clone())),
        Presented::Sha256(hex32(OTHER_HEX).unwrap())
    );
    assert_eq!(
        presented(&conn, &facts(&[], PeerCertificate::Unavailable)),
        Presented::Unavailable
    );
    let x = source(json!({"source": "xfcc"}));
    assert_eq!(
        presented(&x, &facts(&all, peer.clone())),
        Presented::Sha256(digest())
    );
    assert_eq!(
        presented(&x, &facts(&all[1..], peer.clone())),
        Presented::None
    );
    let h = source(json!({"source": "header", "header": "X-Client-Cert"}));
    assert_eq!(
        presented(&h, &facts(&all, peer.clone())),
        Presented::Sha256(digest())
    );
    assert_eq!(presented(&h, &facts(&all[..1], peer)), Presented::None);
    assert_eq!(trusted_header(&conn), None);
    assert_eq!(
        trusted_header(&x).as_deref(),
        Some("x-forwarded-client-cert")
    );
    assert_eq!(trusted_header(&h).as_deref(), Some("x-client-cert"));
}

#[test]
fn two_xfcc_headers_are_one_list_and_an_oversized_header_is_none() {
    let x = source(json!({"source": "xfcc"}));
    let first = format!("Hash={OTHER_HEX}");
    let second = format!("Hash={HEX}");
    let f = facts(
        &[
            ("x-forwarded-client-cert", first.as_str()),
            ("x-forwarded-client-cert", second.as_str()),
        ],
        PeerCertificate::None,
    );
    assert_eq!(presented(&x, &f), Presented::Sha256(digest()));
    let huge = format!(
        "By=\"{}\";Hash={HEX}",
        "a".repeat(MAX_CERTIFICATE_HEADER_BYTES)
    );
    let f = facts(
        &[("x-forwarded-client-cert", huge.as_str())],
        PeerCertificate::None,
    );
    assert_eq!(presented(&x, &f), Presented::None);
}

fn provider(mode: &str) -> Provider {
    serde_json::from_value(json!({
        "name": "p", "issuer": "https://issuer.test", "jwks": {"keys": []},
        "certificate_bound": mode
    }))
    .unwrap()
}

fn caller(p: &Provider, claims: serde_json::Value) -> Identity {
    let mut who = Identity::from_claims(p, claims.as_object().unwrap().clone());
    bind(&mut who);
    who
}

#[test]
fn each_reason() {
    let conn = source(json!({}));
    let allowed = provider("allowed");
    let required = provider("required");
    let bound = caller(&allowed, json!({"sub": "a", "cnf": {"x5t#S256": X5T}}));
    let bearer = caller(&allowed, json!({"sub": "a"}));
    assert_eq!(bound.binding, TokenBinding::Mtls);
    assert_eq!(bearer.binding, TokenBinding::None);
    let with = |hex: &str| facts(&[], PeerCertificate::Sha256Hex(hex.into()));
    let none = facts(&[], PeerCertificate::None);

    assert_eq!(check(&conn, &allowed, &bound, &with(HEX)), Ok(()));
    assert_eq!(
        check(&conn, &allowed, &bound, &with(&HEX.to_uppercase())),
        Ok(())
    );
    assert_eq!(
        check(&conn, &allowed, &bound, &with(OTHER_HEX)),
        Err(Reason::CertificateMismatch)
    );
    assert_eq!(
        check(&conn, &allowed, &bound, &none),
        Err(Reason::CertificateMissing)
    );
    assert_eq!(
        check(
            &conn,
            &allowed,
            &bound,
            &facts(&[], PeerCertificate::Unavailable)
        ),
        Err(Reason::CertificateUnavailable)
    );
    // An unbound token: fine when allowed, whatever the connection; refused when required.
    assert_eq!(check(&conn, &allowed, &bearer, &none), Ok(()));
    assert_eq!(check(&conn, &allowed, &bearer, &with(OTHER_HEX)), Ok(()));
    assert_eq!(
        check(&conn, &required, &bearer, &with(HEX)),
        Err(Reason::CertificateRequired)
    );
    assert_eq!(check(&conn, &required, &bound, &with(HEX)), Ok(()));
    // A `cnf` thumbprint that cannot be a SHA-256 matches nothing.
    for odd in [
        json!("B0Vu"),
        json!(7),
        json!(null),
        json!(X5T.to_string() + "AA"),
    ] {
        let who = caller(&allowed, json!({"cnf": {"x5t#S256": odd}}));
        assert_eq!(who.binding, TokenBinding::Mtls);
        assert_eq!(
            check(&conn, &allowed, &who, &with(HEX)),
            Err(Reason::CertificateMismatch),
            "{odd}"
        );
    }
    // A `cnf` without `x5t#S256` (a DPoP `jkt`, say) is not a certificate binding.
    let dpop = caller(&allowed, json!({"cnf": {"jkt": "abc"}}));
    assert_eq!(dpop.binding, TokenBinding::None);
    assert_eq!(check(&conn, &allowed, &dpop, &none), Ok(()));
}

#[test]
fn an_unread_certificate_is_read_only_for_a_bound_token_and_unavailable_if_never_read() {
    let conn = source(json!({}));
    let allowed = provider("allowed");
    let bound = caller(&allowed, json!({"sub": "a", "cnf": {"x5t#S256": X5T}}));
    let bearer = caller(&allowed, json!({"sub": "a"}));
    let unread = facts(&[], PeerCertificate::Unread);
    let reads = &std::cell::Cell::new(0);
    let read = |peer: PeerCertificate| {
        move || {
            reads.set(reads.get() + 1);
            peer.clone()
        }
    };
    let ok = read(PeerCertificate::Sha256Hex(HEX.into()));
    assert_eq!(super::check(&conn, &allowed, &bearer, &unread, &ok), Ok(()));
    assert_eq!(
        reads.get(),
        0,
        "an unbound token does not need the certificate"
    );
    assert_eq!(super::check(&conn, &allowed, &bound, &unread, &ok), Ok(()));
    assert_eq!(reads.get(), 1);
    let other = read(PeerCertificate::Sha256Hex(OTHER_HEX.into()));
    assert_eq!(
        super::check(&conn, &allowed, &bound, &unread, &other),
        Err(Reason::CertificateMismatch)
    );
    // Left unread (no reader asked), it is not a certificate: refused, never accepted.
    assert_eq!(presented(&conn, &unread), Presented::Unavailable);
}

/// The request path with a certificate-bound token: every request is checked (cached tokens
/// too), the binding reaches the claim header and the assertion, the trusted header is managed.
mod decide {
    use super::*;
    use crate::decide::{Decision, Tested};
    use crate::engine::Engine;
    use crate::headers::HeaderOp;
    use crate::jwks::test_keys;

    const NOW: u64 = 1_800_000_000;

    fn engine(extra: serde_json::Value) -> Tested {
        let mut v = json!({
            "providers": [{
                "name": "p", "issuer": "https://issuer.test",
                "jwks": {"keys": [test_keys::ed25519_jwk()]}
            }],
            "default": "authenticated",
            "headers": {
                "claims": [{"identity": "binding", "header": "x-identity-binding"}],
                "assertion": {"audience": "svc", "keys": [{"kid": "a1", "secret": "assertion-secret-assertion-secret"}]}
            },
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        Engine::from_json(v.to_string().as_bytes()).unwrap().into()
    }

    fn request(token: &str, headers: &[(&str, &str)], peer: PeerCertificate) -> RequestFacts {
        let bearer = format!("Bearer {token}");
        let mut all = vec![("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        RequestFacts {
            method: "GET".into(),
            path: "/x".into(),
            authority: "api.test".into(),
            nonce: "u-1".into(),
            ..facts(&all, peer)
        }
    }

    fn reason(d: &Decision) -> Option<Reason> {
        match d {
            Decision::Deny { log, .. } => log.reason,
            _ => None,
        }
    }

    fn set<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
        let Decision::Allow { ops, .. } = d else {
            return None;
        };
        ops.iter().find_map(|op| match op {
            HeaderOp::Set(n, v) if n == name => Some(v.as_str()),
            _ => None,
        })
    }

    fn binding_claim(assertion: &str) -> serde_json::Value {
        let part = assertion.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["binding"].clone()
    }

    #[test]
    fn a_cached_bound_token_is_checked_on_every_request() {
        let e = engine(json!({}));
        let token = test_keys::sign_ed25519(
            "https://issuer.test",
            NOW,
            json!({"cnf": {"x5t#S256": X5T}}),
        );
        let good = PeerCertificate::Sha256Hex(HEX.into());
        let d = e.decide(&request(&token, &[], good.clone()), NOW);
        assert_eq!(set(&d, "x-identity-binding"), Some("mtls"));
        assert_eq!(
            binding_claim(set(&d, "x-identity-assertion").unwrap()),
            "mtls"
        );
        // The identity is cached now; the certificate is not.
        let other = PeerCertificate::Sha256Hex(OTHER_HEX.into());
        let d = e.decide(&request(&token, &[], other), NOW);
        assert_eq!(reason(&d), Some(Reason::CertificateMismatch));
        let d = e.decide(&request(&token, &[], PeerCertificate::None), NOW);
        assert_eq!(reason(&d), Some(Reason::CertificateMissing));
        let Decision::Deny { response, .. } = &d else {
            panic!("expected deny")
        };
        assert_eq!(response.status, 401);
        assert!(response.headers.contains(&(
            "www-authenticate".into(),
            "Bearer error=\"invalid_token\"".into()
        )));
        assert_eq!(e.cache_stats().1, 2, "the later requests were cache hits");
        let d = e.decide(&request(&token, &[], good), NOW);
        assert_eq!(set(&d, "x-identity-binding"), Some("mtls"));
    }

    #[test]
    fn a_bearer_token_stays_unbound_and_required_refuses_it() {
        let token = test_keys::sign_ed25519("https://issuer.test", NOW, json!({}));
        let e = engine(json!({}));
        let d = e.decide(&request(&token, &[], PeerCertificate::None), NOW);
        assert_eq!(set(&d, "x-identity-binding"), Some("none"));
        let mut required = json!({
            "name": "p", "issuer": "https://issuer.test",
            "jwks": {"keys": [test_keys::ed25519_jwk()]},
            "certificate_bound": "required"
        });
        let e = engine(json!({"providers": [required.clone()]}));
        let d = e.decide(&request(&token, &[], PeerCertificate::None), NOW);
        assert_eq!(reason(&d), Some(Reason::CertificateRequired));
        required["certificate_bound"] = json!("off");
        let bad = json!({"providers": [required], "default": "authenticated"});
        assert!(crate::Config::from_json(bad.to_string().as_bytes()).is_err());
    }

    #[test]
    fn in_report_only_a_refused_binding_is_reported_without_identity() {
        let e = engine(json!({"report_only": true}));
        let token = test_keys::sign_ed25519(
            "https://issuer.test",
            NOW,
            json!({"cnf": {"x5t#S256": X5T}}),
        );
        let d = e.decide(&request(&token, &[], PeerCertificate::None), NOW);
        assert_eq!(
            set(&d, "x-identity-report"),
            Some("deny; reason=certificate_missing; rule=default")
        );
        assert_eq!(set(&d, "x-identity-binding"), None);
    }

    #[test]
    fn the_trusted_header_is_read_then_stripped_and_never_refused_as_spoofed() {
        let token = test_keys::sign_ed25519(
            "https://issuer.test",
            NOW,
            json!({"cnf": {"x5t#S256": X5T}}),
        );
        let xfcc = format!("By=spiffe://gw;Hash={HEX}");
        let h = [("x-forwarded-client-cert", xfcc.as_str())];
        let e = engine(json!({"client_certificate": {"source": "xfcc"}}));
        let d = e.decide(&request(&token, &h, PeerCertificate::None), NOW);
        let Decision::Allow { ops, .. } = &d else {
            panic!("expected allow, got {d:?}")
        };
        assert!(ops.contains(&HeaderOp::Remove("x-forwarded-client-cert".into())));
        assert_eq!(set(&d, "x-identity-binding"), Some("mtls"));
        // Where managed headers are refused (Kong), the trusted header is expected, not spoofed;
        // any other managed header still is.
        let mut f = request(&token, &h, PeerCertificate::None);
        f.reject_spoofed = true;
        assert_eq!(set(&e.decide(&f, NOW), "x-identity-binding"), Some("mtls"));
        f.headers.push(("x-identity-binding".into(), "mtls".into()));
        assert_eq!(
            reason(&e.decide(&f, NOW)),
            Some(Reason::IdentityHeaderSpoofed)
        );
        // With source `connection`, the same XFCC is not trusted (it is not managed either).
        let e = engine(json!({}));
        let d = e.decide(&request(&token, &h, PeerCertificate::None), NOW);
        assert_eq!(reason(&d), Some(Reason::CertificateMissing));
        let d = e.decide(
            &request(&token, &h, PeerCertificate::Sha256Hex(HEX.into())),
            NOW,
        );
        let Decision::Allow { ops, .. } = &d else {
            panic!("expected allow, got {d:?}")
        };
        assert!(!ops.contains(&HeaderOp::Remove("x-forwarded-client-cert".into())));
    }

    #[test]
    fn a_pem_header_source() {
        let e = engine(
            json!({"client_certificate": {"source": "header", "header": "X-SSL-Client-Cert"}}),
        );
        let token = test_keys::sign_ed25519(
            "https://issuer.test",
            NOW,
            json!({"cnf": {"x5t#S256": X5T}}),
        );
        let pem = url_encode(PEM);
        let d = e.decide(
            &request(
                &token,
                &[("x-ssl-client-cert", pem.as_str())],
                PeerCertificate::None,
            ),
            NOW,
        );
        assert_eq!(set(&d, "x-identity-binding"), Some("mtls"));
        let d = e.decide(
            &request(
                &token,
                &[("x-ssl-client-cert", "garbage")],
                PeerCertificate::None,
            ),
            NOW,
        );
        assert_eq!(reason(&d), Some(Reason::CertificateMissing));
    }
}

#[test]
fn client_certificate_config_is_checked() {
    let with = |cc: serde_json::Value| {
        let v = json!({
            "providers": [{"name": "p", "issuer": "https://i", "jwks": {"keys": []}}],
            "headers": {"claims": [{"claim": "sub", "header": "x-sub"}]},
            "client_certificate": cc,
        });
        crate::Config::from_json(v.to_string().as_bytes()).map_err(|e| e.path)
    };
    assert!(with(json!({})).is_ok());
    assert!(with(json!({"source": "xfcc"})).is_ok());
    assert!(with(json!({"source": "header", "header": "x-client-cert"})).is_ok());
    let at = Err("client_certificate.header".to_string());
    assert_eq!(with(json!({"source": "header"})).map(|_| ()), at);
    assert_eq!(
        with(json!({"source": "xfcc", "header": "x-c"})).map(|_| ()),
        at
    );
    assert_eq!(with(json!({"header": "x-c"})).map(|_| ()), at);
    assert_eq!(
        with(json!({"source": "header", "header": "bad name"})).map(|_| ()),
        at
    );
    assert_eq!(
        with(json!({"source": "header", "header": "Authorization"})).map(|_| ()),
        at
    );
    assert_eq!(
        with(json!({"source": "header", "header": "X-Sub"})).map(|_| ()),
        at
    );
    assert!(with(json!({"source": "tls"})).is_err());
    assert!(with(json!({"source": "xfcc", "extra": 1})).is_err());
}
