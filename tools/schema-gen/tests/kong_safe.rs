//! Kong-safe behaviour of the core, tested natively through the crate's public API (the host
//! glue itself is wasm-only; see tests/test_kong_safety.py for the checks on the built module).
#![allow(clippy::panic, clippy::unwrap_used)]

use identity_filter::{
    config_invalid_response, render_denial, Denial, Detail, Engine, Reason, Response,
};

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Kong does not add a `content-type` to a local response (and appends `\n` to its body): every
/// local response with a body names its type itself.
#[test]
fn every_local_response_with_a_body_sets_content_type() {
    for r in Reason::ALL {
        for detail in [Detail::None, Detail::Reason, Detail::Message] {
            let response =
                render_denial(&Denial::new(r), detail, Some("realm"), "x-identity-reason");
            if !response.body.is_empty() {
                assert_eq!(
                    header(&response, "content-type"),
                    Some("application/json"),
                    "{r:?} / {detail:?}"
                );
            }
            assert_eq!(header(&response, "x-identity-reason"), Some(r.code()));
        }
    }
}

/// What every request gets when `on_configure` saw a bad configuration (it returns `true` so
/// Kong's filter-chain rebuild goes on, and the filter fails closed instead).
#[test]
fn an_invalid_config_fails_closed_with_500_config_invalid() {
    let response = config_invalid_response();
    assert_eq!(response.status, 500);
    assert_eq!(
        header(&response, "x-identity-reason"),
        Some("config_invalid")
    );
    assert_eq!(header(&response, "content-type"), Some("application/json"));
}

/// `on_configure` gets an error (to log, naming the field) for anything Kong may hand it:
/// nothing, a non-JSON string, JSON of the wrong shape. None of it panics (a panic is a trap,
/// which on Kong kills the instance every chain of the worker shares).
#[test]
fn bad_configurations_are_errors_naming_a_field_not_panics() {
    // (input, path, message); a message ending in a space is the start of one (the rest counts
    // the configuration's sections).
    let cases: [(&[u8], &str, &str); 7] = [
        (b"", ".", "EOF while parsing a value (line 1, column 0)"),
        (b"null", ".", "invalid type: null, expected struct Config"),
        (
            b"\"{}\"",
            ".",
            "invalid type: string \"{}\", expected struct Config",
        ),
        (b"[]", ".", "invalid length 0, expected struct Config with "),
        (
            b"{\"providers\": 1}",
            "providers",
            "invalid type: integer `1`, expected a sequence",
        ),
        (
            b"{\"providers\": [{}]}",
            "providers[0]",
            "missing field `name`",
        ),
        (
            &[0xff, 0xfe, 0x00],
            ".",
            "expected value (line 1, column 1)",
        ),
    ];
    for (bytes, path, message) in cases {
        let e = Engine::from_json(bytes).unwrap_err();
        assert_eq!(e.path, path, "{bytes:?}");
        if message.ends_with(' ') {
            assert!(e.message.starts_with(message), "{bytes:?}: {:?}", e.message);
        } else {
            assert_eq!(e.message, message, "{bytes:?}");
        }
    }
    let e = Engine::from_json(br#"{"providers": [{"name": "a", "issuer": "i", "jwks": {"keys": []}}], "metrics": {"on": false}}"#)
        .unwrap_err();
    assert_eq!(e.path, "metrics.on");
}

/// Kong 3.4–3.7 trap on metric host calls: `metrics.enabled: false` must parse, and is what
/// the glue reads before defining any metric.
#[test]
fn metrics_can_be_switched_off() {
    let on = Engine::from_json(
        br#"{"providers": [{"name": "a", "issuer": "i", "jwks": {"keys": []}}]}"#,
    )
    .unwrap();
    assert!(
        on.config.metrics.enabled,
        "default on (Envoy, Istio, Kong 3.8+)"
    );
    let off = Engine::from_json(
        br#"{"providers": [{"name": "a", "issuer": "i", "jwks": {"keys": []}}], "metrics": {"enabled": false}}"#,
    )
    .unwrap();
    assert!(!off.config.metrics.enabled);
}

/// Under Kong the fetch upstream is `host:port` or an IP; under Envoy/Istio a cluster name.
/// The filter passes it through untouched, so both parse.
#[test]
fn fetch_upstreams_may_be_host_port_or_cluster_names() {
    for upstream in [
        "idp.example.com:443",
        "10.0.0.7:8443",
        "outbound|443||idp.example.com",
    ] {
        let doc = format!(
            r#"{{"providers": [{{"name": "a", "issuer": "https://idp.example.com",
                 "jwks_uri": "https://idp.example.com/keys", "upstream": "{upstream}"}}]}}"#
        );
        let engine = Engine::from_json(doc.as_bytes()).unwrap();
        assert_eq!(
            engine.config.providers[0].upstream.as_deref(),
            Some(upstream)
        );
    }
}
