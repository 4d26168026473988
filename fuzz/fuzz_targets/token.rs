//! Structure-aware tokens: header and claims chosen by the fuzzer, signed inside the harness
//! with a key the configuration trusts, then (maybe) changed after signing, and sent from one
//! of the token sources. Checked, besides `check::decide_all`'s invariants:
//! - a token changed after signing is never accepted (no verified caller);
//! - an unchanged token that the reference libraries and the RFC 7519 rules find valid for
//!   its provider is accepted (the filter does not refuse good tokens).
#![no_main]

use arbitrary::Arbitrary;
use fuzz_support::keys::{self, Alg};
use fuzz_support::{check, request, NOW};
use identity_filter::{find_token, RequestFacts};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

#[derive(Debug, Arbitrary)]
enum Kid {
    Right,
    Absent,
    Wrong(String),
    NotAString,
}

#[derive(Debug, Arbitrary)]
enum Typ {
    Absent,
    Jwt,
    AtJwt,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Iss {
    Right,
    Other,
    Absent,
    Number,
}

#[derive(Debug, Arbitrary)]
enum Aud {
    Api,
    Other(String),
    List(bool),
    Absent,
    Number,
}

#[derive(Debug, Arbitrary)]
struct Claims {
    iss: Iss,
    aud: Aud,
    sub: Option<String>,
    /// Offsets from NOW, in units of 37 s.
    exp: Option<i16>,
    nbf: Option<i16>,
    iat: Option<i16>,
    float_exp: bool,
    roles: Vec<String>,
    scope: Option<String>,
    tid: Option<String>,
    email: Option<String>,
    extra: Option<(String, String)>,
}

#[derive(Debug, Arbitrary)]
enum Mutation {
    /// Flip one bit of the decoded header (0), payload (1) or signature (2), re-encoded.
    FlipBit {
        part: u8,
        at: u16,
        bit: u8,
    },
    /// Replace one character of the compact form.
    SetChar {
        at: u16,
        to: u8,
    },
    Truncate {
        at: u16,
    },
    Append(u8),
    /// Another `alg` in the header, the signature kept.
    ReplaceAlg(String),
    /// `alg: none` and no signature.
    AlgNone,
    /// HS256 keyed with the bytes of a public key the configuration holds.
    HmacWithPublicKey,
    DropSignature,
    /// Another payload, the signature kept.
    SwapPayload(Claims),
    ExtendSignature(u8),
}

#[derive(Debug, Arbitrary)]
enum Place {
    Bearer,
    Cookie,
    Query,
    XToken,
}

#[derive(Debug, Arbitrary)]
struct Input {
    config: u8,
    alg: Alg,
    rsa_key: u8,
    kid: Kid,
    typ: Typ,
    crit: bool,
    claims: Claims,
    place: Place,
    path: u8,
    method: u8,
    time: u8,
    seed: u64,
    mutation: Option<Mutation>,
}

const PATHS: [&str; 8] = [
    "/",
    "/admin/x",
    "/t/acme/runs",
    "/claims",
    "/report/1",
    "/public/x",
    "/runs?x=1",
    "/t/globex/runs",
];
const METHODS: [&str; 3] = ["GET", "POST", "DELETE"];

fn offset(units: i16) -> u64 {
    NOW.saturating_add_signed(i64::from(units) * 37)
}

fn claims_json(c: &Claims, alg: Alg) -> Value {
    let mut m = Map::new();
    match c.iss {
        Iss::Right => m.insert("iss".into(), json!(alg.issuer())),
        Iss::Other => m.insert("iss".into(), json!("https://evil.fuzz")),
        Iss::Absent => None,
        Iss::Number => m.insert("iss".into(), json!(7)),
    };
    match &c.aud {
        Aud::Api => m.insert("aud".into(), json!(keys::AUDIENCE)),
        Aud::Other(a) => m.insert("aud".into(), json!(a)),
        Aud::List(with_api) => m.insert(
            "aud".into(),
            if *with_api {
                json!(["x", keys::AUDIENCE])
            } else {
                json!(["x", "y"])
            },
        ),
        Aud::Absent => None,
        Aud::Number => m.insert("aud".into(), json!(1)),
    };
    if let Some(sub) = &c.sub {
        m.insert("sub".into(), json!(sub));
    }
    if let Some(exp) = c.exp {
        let exp = offset(exp);
        m.insert(
            "exp".into(),
            if c.float_exp {
                json!(exp as f64 + 0.5)
            } else {
                json!(exp)
            },
        );
    }
    if let Some(nbf) = c.nbf {
        m.insert("nbf".into(), json!(offset(nbf)));
    }
    if let Some(iat) = c.iat {
        m.insert("iat".into(), json!(offset(iat)));
    }
    if !c.roles.is_empty() {
        m.insert("roles".into(), json!(c.roles));
    }
    for (name, v) in [("scope", &c.scope), ("tid", &c.tid), ("email", &c.email)] {
        if let Some(v) = v {
            m.insert(name.into(), json!(v));
        }
    }
    if let Some((k, v)) = &c.extra {
        m.entry(k.clone()).or_insert_with(|| json!(v));
    }
    Value::Object(m)
}

fn b64d(part: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_default()
}

/// The token changed after signing (it may come out the same).
fn mutate(token: &str, header: &Value, alg: Alg, m: &Mutation) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return token.to_string();
    };
    let with_header = |header: &Value, sig: &str| {
        format!("{}.{p}.{sig}", keys::b64(header.to_string().as_bytes()))
    };
    match m {
        Mutation::FlipBit { part, at, bit } => {
            let mut parts: Vec<Vec<u8>> = vec![b64d(h), b64d(p), b64d(s)];
            if let Some(bytes) = parts.get_mut(usize::from(*part % 3)) {
                let len = bytes.len().max(1);
                if let Some(b) = bytes.get_mut(usize::from(*at) % len) {
                    *b ^= 1 << (bit % 8);
                }
            }
            parts
                .iter()
                .map(|b| keys::b64(b))
                .collect::<Vec<_>>()
                .join(".")
        }
        Mutation::SetChar { at, to } => {
            let mut bytes = token.as_bytes().to_vec();
            let len = bytes.len().max(1);
            if let Some(b) = bytes.get_mut(usize::from(*at) % len) {
                *b = *to;
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Mutation::Truncate { at } => {
            let at = usize::from(*at) % token.len().max(1);
            token.get(..at).unwrap_or_default().to_string()
        }
        Mutation::Append(c) => format!("{token}{}", char::from(*c)),
        Mutation::ReplaceAlg(name) => {
            let mut hd = header.clone();
            hd["alg"] = json!(name);
            with_header(&hd, s)
        }
        Mutation::AlgNone => {
            let mut hd = header.clone();
            hd["alg"] = json!("none");
            format!("{}.{p}.", keys::b64(hd.to_string().as_bytes()))
        }
        Mutation::HmacWithPublicKey => {
            let mut hd = header.clone();
            hd["alg"] = json!("HS256");
            let jwks = keys::public_jwks();
            let secret = jwks["keys"]
                .as_array()
                .and_then(|k| k.iter().find(|k| k["kid"] == alg.kid(0)))
                .map(|k| k.to_string())
                .unwrap_or_default();
            let head = keys::b64(hd.to_string().as_bytes());
            let input = format!("{head}.{p}");
            let sig = hmac_sha256(secret.as_bytes(), input.as_bytes());
            format!("{input}.{}", keys::b64(&sig))
        }
        Mutation::DropSignature => format!("{h}.{p}."),
        Mutation::SwapPayload(c) => {
            let payload = keys::b64(claims_json(c, alg).to_string().as_bytes());
            format!("{h}.{payload}.{s}")
        }
        Mutation::ExtendSignature(b) => {
            let mut sig = b64d(s);
            sig.push(*b);
            format!("{h}.{p}.{}", keys::b64(&sig))
        }
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn facts(input: &Input, token: &str) -> RequestFacts {
    let path = PATHS[usize::from(input.path) % PATHS.len()];
    let mut headers = Vec::new();
    let path = match input.place {
        Place::Bearer => {
            headers.push(("authorization".to_string(), format!("Bearer {token}")));
            path.to_string()
        }
        Place::Cookie => {
            headers.push(("cookie".to_string(), format!("theme=dark; session={token}")));
            path.to_string()
        }
        Place::Query => {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}access_token={token}")
        }
        Place::XToken => {
            headers.push(("x-token".to_string(), token.to_string()));
            path.to_string()
        }
    };
    RequestFacts {
        method: METHODS[usize::from(input.method) % METHODS.len()].to_string(),
        path,
        authority: "api.test".into(),
        scheme: "https".into(),
        headers,
        nonce: "fuzz-nonce-1".into(),
        reject_spoofed: false,
        peer_certificate: Default::default(),
    }
}

fuzz_target!(
    init: fuzz_support::seeds::write_if_asked("token"),
    |input: Input| {
    let alg = input.alg;
    let rsa = usize::from(input.rsa_key);
    let mut header = Map::new();
    header.insert("alg".into(), json!(alg.name()));
    match &input.kid {
        Kid::Right => {
            header.insert("kid".into(), json!(alg.kid(rsa)));
        }
        Kid::Absent => {}
        Kid::Wrong(k) => {
            header.insert("kid".into(), json!(k));
        }
        Kid::NotAString => {
            header.insert("kid".into(), json!(1));
        }
    }
    match &input.typ {
        Typ::Absent => {}
        Typ::Jwt => {
            header.insert("typ".into(), json!("JWT"));
        }
        Typ::AtJwt => {
            header.insert("typ".into(), json!("at+jwt"));
        }
        Typ::Other(t) => {
            header.insert("typ".into(), json!(t));
        }
    }
    if input.crit {
        header.insert("crit".into(), json!(["exp"]));
    }
    let header = Value::Object(header);
    let claims = claims_json(&input.claims, alg);
    let signed = keys::sign_token(alg, rsa, &header, &claims, input.seed);
    let sent = match &input.mutation {
        Some(m) => mutate(&signed, &header, alg, m),
        None => signed.clone(),
    };
    let sent = request::as_host_delivers(&sent);
    let facts = facts(&input, &sent);
    let now = request::now_for(input.time);
    check::with_engines(usize::from(input.config), |cached, caches, uncached| {
        let config = &cached.config;
        let jwks = check::inline_jwks(config);
        let decision = check::decide_all(
            (cached, caches),
            uncached,
            None,
            &facts,
            now,
            &jwks,
        );
        let verified = check::verified_provider(&decision);
        // What the filter reads from the request (sources differ per configuration).
        let read = find_token(&config.token_sources, &facts, config.max_token_bytes);
        let read = read.ok().flatten().map(|f| f.token);
        if read.as_deref().is_some_and(|t| t != signed) {
            assert!(
                verified.is_none(),
                "TAMPERED TOKEN ACCEPTED by {verified:?}: signed {signed:?}, read {read:?}"
            );
        }
        if read.as_deref() != Some(signed.as_str()) {
            return;
        }
        // An unchanged token: when the reference finds it valid for its provider, the filter
        // must accept it (typ and crit are checked here; kid only selects the key).
        let Some((index, provider)) = config
            .providers
            .iter()
            .enumerate()
            .find(|(_, p)| Some(p.issuer.as_str()) == claims["iss"].as_str())
        else {
            return;
        };
        let typ_ok = match &input.typ {
            Typ::Other(t) => {
                let t = t.to_ascii_uppercase();
                t == "JWT" || t.ends_with("+JWT")
            }
            _ => true,
        };
        let claims_typed = claims.get("sub").is_none_or(Value::is_string)
            && match claims.get("aud") {
                None | Some(Value::String(_)) => true,
                Some(Value::Array(items)) => items.iter().all(Value::is_string),
                Some(_) => false,
            };
        let required = provider
            .require_claims
            .iter()
            .all(|c| {
                claims
                    .as_object()
                    .and_then(|o| c.lookup(o))
                    .is_some_and(|v| !v.is_null())
            });
        let expected = typ_ok
            && !input.crit
            && claims_typed
            && required
            && matches!(input.kid, Kid::Right | Kid::Absent | Kid::Wrong(_))
            && jwks(index).is_some_and(|k| check::judge(&signed, provider, &k, now).is_ok());
        if expected {
            assert_eq!(
                verified,
                Some(provider.name.as_str()),
                "VALID TOKEN REFUSED: {decision:?}\ntoken {signed:?}"
            );
        }
    });
});
