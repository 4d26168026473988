//! Issuer patterns: one provider for a multi-tenant issuer whose `iss` names the tenant in one
//! path segment (`https://login.microsoftonline.com/{tenant}/v2.0`, Entra ID), with one key set
//! and an allow-list of tenants. A token's `iss` matches a pattern when it is the pattern with a
//! non-empty segment in place of `{tenant}`; that segment is the token's tenant.

use std::borrow::Cow;

use crate::config::Provider;

/// The placeholder of an issuer pattern.
pub const PLACEHOLDER: &str = "{tenant}";

/// Whether a configured issuer is a pattern.
pub fn is_pattern(issuer: &str) -> bool {
    issuer.contains(PLACEHOLDER)
}

/// A pattern is an http(s) URL with exactly one `{tenant}`, a whole path segment, and no other
/// braces.
pub fn check_pattern(issuer: &str) -> Result<(), String> {
    let Some((before, after)) = issuer.split_once(PLACEHOLDER) else {
        return Err("is not a pattern".into());
    };
    let rest = before
        .strip_prefix("https://")
        .or_else(|| before.strip_prefix("http://"))
        .ok_or("an issuer pattern must be an http(s) URL")?;
    if !rest.contains('/') || !rest.ends_with('/') || !(after.is_empty() || after.starts_with('/'))
    {
        return Err("`{tenant}` must be a whole path segment".into());
    }
    if before.contains(['{', '}']) || after.contains(['{', '}']) {
        return Err("an issuer pattern has exactly one `{tenant}` and no other braces".into());
    }
    Ok(())
}

/// The tenant segment of `iss` under `pattern`; `None` when `iss` does not match it.
pub fn tenant_of<'a>(pattern: &str, iss: &'a str) -> Option<&'a str> {
    let (before, after) = pattern.split_once(PLACEHOLDER)?;
    let tenant = iss.strip_prefix(before)?.strip_suffix(after)?;
    (!tenant.is_empty() && !tenant.contains('/')).then_some(tenant)
}

/// How a provider takes a token's `iss`: `Some(None)` for its exact issuer, `Some(Some(t))` for
/// a listed tenant `t` of its pattern, `None` otherwise.
pub fn accepts<'a>(provider: &Provider, iss: &'a str) -> Option<Option<&'a str>> {
    if !is_pattern(&provider.issuer) {
        return (provider.issuer == iss).then_some(None);
    }
    let tenant = tenant_of(&provider.issuer, iss)?;
    provider
        .tenants
        .iter()
        .any(|t| t == tenant)
        .then_some(Some(tenant))
}

/// Whether one `iss` could match both configured issuers (patterns or exact): segment by
/// segment, `{tenant}` stands for any non-empty segment.
pub fn overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            x == y || (*x == PLACEHOLDER && !y.is_empty()) || (*y == PLACEHOLDER && !x.is_empty())
        })
}

/// The issuer whose discovery document is fetched: the issuer itself, or for a pattern, the
/// pattern with its first listed tenant. A tenant's own document names that tenant's concrete
/// issuer (Entra's `common` document names the literal template `{tenantid}`, which proves
/// nothing), and the keys it points to serve every tenant of the pattern.
pub fn discovery_issuer(provider: &Provider) -> Cow<'_, str> {
    match provider.tenants.first() {
        Some(tenant) if is_pattern(&provider.issuer) => {
            Cow::Owned(provider.issuer.replacen(PLACEHOLDER, tenant, 1))
        }
        _ => Cow::Borrowed(&provider.issuer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRA: &str = "https://login.microsoftonline.com/{tenant}/v2.0";
    const ACME: &str = "3f2c9a0e-1b7d-4c55-9a3e-2d1f0c8b7a61";

    fn provider(issuer: &str, tenants: &[&str]) -> Provider {
        serde_json::from_value(serde_json::json!({
            "name": "p", "issuer": issuer, "tenants": tenants, "jwks": {"keys": []}
        }))
        .unwrap()
    }

    #[test]
    fn patterns_have_one_whole_segment_placeholder() {
        assert_eq!(check_pattern(ENTRA), Ok(()));
        assert_eq!(check_pattern("https://idp.test/t/{tenant}"), Ok(()));
        for bad in [
            "https://{tenant}.idp.test/",
            "https://idp.test/x{tenant}/v2.0",
            "https://idp.test/{tenant}x/v2.0",
            "https://idp.test/{tenant}/{tenant}",
            "https://idp.test/{tenant}/{x}",
            "idp.test/{tenant}",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_matching_iss_yields_its_tenant_segment() {
        let iss = format!("https://login.microsoftonline.com/{ACME}/v2.0");
        assert_eq!(tenant_of(ENTRA, &iss), Some(ACME));
        for other in [
            "https://login.microsoftonline.com//v2.0",
            "https://login.microsoftonline.com/a/b/v2.0",
            "https://login.microsoftonline.com/a/v2.0/",
            "https://login.microsoftonline.com/a",
            "https://sts.windows.net/a/",
        ] {
            assert_eq!(tenant_of(ENTRA, other), None, "{other}");
        }
    }

    #[test]
    fn only_listed_tenants_are_accepted() {
        let p = provider(ENTRA, &[ACME]);
        let iss = format!("https://login.microsoftonline.com/{ACME}/v2.0");
        assert_eq!(accepts(&p, &iss), Some(Some(ACME)));
        let upper = iss.to_ascii_uppercase();
        assert_eq!(accepts(&p, &upper), None, "compared exactly, like `iss`");
        assert_eq!(
            accepts(&p, "https://login.microsoftonline.com/globex/v2.0"),
            None
        );
        let exact = provider("https://idp.test", &[]);
        assert_eq!(accepts(&exact, "https://idp.test"), Some(None));
        assert_eq!(accepts(&exact, "https://idp.test/"), None);
    }

    #[test]
    fn overlapping_issuers_are_found() {
        let concrete = format!("https://login.microsoftonline.com/{ACME}/v2.0");
        assert!(overlap(ENTRA, &concrete));
        assert!(overlap(ENTRA, ENTRA));
        assert!(overlap(
            ENTRA,
            "https://login.microsoftonline.com/x/{tenant}"
        ));
        assert!(!overlap(
            ENTRA,
            "https://login.microsoftonline.com/{tenant}/v1.0"
        ));
        assert!(!overlap(
            ENTRA,
            "https://login.microsoftonline.com/{tenant}"
        ));
        assert!(!overlap(ENTRA, "https://login.microsoftonline.com//v2.0"));
        assert!(!overlap("https://a.test", "https://b.test"));
    }

    #[test]
    fn discovery_uses_the_first_tenant() {
        let p = provider(ENTRA, &[ACME, "other"]);
        assert_eq!(
            discovery_issuer(&p),
            format!("https://login.microsoftonline.com/{ACME}/v2.0")
        );
        let exact = provider("https://idp.test", &[]);
        assert_eq!(discovery_issuer(&exact), "https://idp.test");
    }
}
