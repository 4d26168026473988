//! Route rules: which rule covers a request, and what it asks of the caller.

use std::borrow::Cow;

use crate::config::{Config, DefaultAction, Rule, RouteMatch};

/// What the covering rule asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed; a token that is sent must be valid.
    Anonymous,
    /// A valid token is needed.
    Authenticated,
    /// Refused whatever the caller sends.
    Deny,
}

/// The rule that covers a request.
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    /// The rule's name (`rules[i]` when unnamed, `default` when no rule matched).
    pub name: Cow<'a, str>,
    pub access: Access,
    /// The rule itself; `None` for the default.
    pub rule: Option<&'a Rule>,
}

/// Find the first rule whose match covers `method` and `path` (without query string).
pub fn select<'a>(config: &'a Config, method: &str, path: &str) -> Matched<'a> {
    for (i, rule) in config.rules.iter().enumerate() {
        if covers(&rule.route, method, path) {
            let name = match &rule.name {
                Some(n) => Cow::Borrowed(n.as_str()),
                None => Cow::Owned(format!("rules[{i}]")),
            };
            let access = if rule.allow_anonymous {
                Access::Anonymous
            } else {
                Access::Authenticated
            };
            return Matched {
                name,
                access,
                rule: Some(rule),
            };
        }
    }
    let access = match config.default {
        DefaultAction::Deny => Access::Deny,
        DefaultAction::Authenticated => Access::Authenticated,
        DefaultAction::Anonymous => Access::Anonymous,
    };
    Matched {
        name: Cow::Borrowed("default"),
        access,
        rule: None,
    }
}

/// True when every condition of the match holds.
pub fn covers(route: &RouteMatch, method: &str, path: &str) -> bool {
    if !route.methods.is_empty() && !route.methods.iter().any(|m| m == method) {
        return false;
    }
    if let Some(exact) = &route.path {
        if exact != path {
            return false;
        }
    }
    if let Some(prefix) = &route.path_prefix {
        if !prefix_covers(prefix, path) {
            return false;
        }
    }
    true
}

/// Segment-wise prefix: `/api` covers `/api` and `/api/x` but not `/apix`; `/api/` and `/`
/// cover everything below them.
pub fn prefix_covers(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: serde_json::Value, default: &str) -> Config {
        let v = serde_json::json!({
            "providers": [{"name": "p", "issuer": "i", "jwks": {"keys": []}}],
            "rules": rules,
            "default": default,
        });
        Config::from_json(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn first_matching_rule_wins() {
        let c = config(
            serde_json::json!([
                {"name": "health", "match": {"path": "/healthz"}, "allow_anonymous": true},
                {"name": "api", "match": {"path_prefix": "/api"}},
                {"name": "catch", "match": {}, "allow_anonymous": true}
            ]),
            "deny",
        );
        let m = select(&c, "GET", "/healthz");
        assert_eq!((m.name.as_ref(), m.access), ("health", Access::Anonymous));
        let m = select(&c, "GET", "/api/x");
        assert_eq!((m.name.as_ref(), m.access), ("api", Access::Authenticated));
        let m = select(&c, "GET", "/other");
        assert_eq!(m.name, "catch");
    }

    #[test]
    fn methods_restrict_a_rule() {
        let c = config(
            serde_json::json!([{"match": {"path_prefix": "/docs", "methods": ["GET", "HEAD"]}, "allow_anonymous": true}]),
            "authenticated",
        );
        assert_eq!(select(&c, "GET", "/docs").access, Access::Anonymous);
        assert_eq!(select(&c, "GET", "/docs").name, "rules[0]");
        let m = select(&c, "POST", "/docs");
        assert_eq!((m.name.as_ref(), m.access), ("default", Access::Authenticated));
    }

    #[test]
    fn default_deny_when_nothing_matches() {
        let c = config(serde_json::json!([]), "deny");
        let m = select(&c, "GET", "/");
        assert_eq!((m.name.as_ref(), m.access), ("default", Access::Deny));
        assert!(m.rule.is_none());
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_covers("/api", "/api"));
        assert!(prefix_covers("/api", "/api/runs"));
        assert!(!prefix_covers("/api", "/apix"));
        assert!(prefix_covers("/api/", "/api/x"));
        assert!(prefix_covers("/", "/anything"));
        assert!(!prefix_covers("/api", "/"));
    }
}
