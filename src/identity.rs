//! The normalized caller: who they are and what they hold, independent of how an issuer spells
//! its claims (`realm_access.roles`, `cognito:groups`, `scp` vs `scope`, ...).

use serde::Serialize;

use crate::claims::{self, ClaimPath, Claims};
use crate::config::Provider;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub subject: Option<String>,
    /// The token's `iss`.
    pub issuer: String,
    /// The provider's configured name.
    pub provider: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub tenant: Option<String>,
    /// How the token is bound to the client that sends it.
    pub binding: TokenBinding,
    /// Every claim of the token, for claim conditions and claim headers.
    #[serde(skip)]
    pub claims: Claims,
    /// SHA-256 of the token, kept with a DPoP-bound token's identity (cached with it): every
    /// proof's `ath` is compared with it.
    #[serde(skip)]
    pub token_hash: Option<[u8; 32]>,
}

impl Identity {
    /// Normalize verified claims with the provider's identity mapping.
    pub fn from_claims(provider: &Provider, claims: Claims) -> Identity {
        let map = &provider.identity;
        Identity {
            subject: first_string(&claims, std::slice::from_ref(&map.subject)),
            issuer: provider.issuer.clone(),
            provider: provider.name.clone(),
            roles: union(&claims, &map.roles),
            groups: union(&claims, &map.groups),
            scopes: union(&claims, &map.scopes),
            tenant: first_string(&claims, &map.tenant),
            binding: TokenBinding::None,
            claims,
            token_hash: None,
        }
    }

    /// A normalized field by name, as the `identity` of a header mapping refers to it.
    pub fn field(&self, name: IdentityField) -> Option<serde_json::Value> {
        let list = |v: &Vec<String>| Some(serde_json::Value::from(v.clone()));
        match name {
            IdentityField::Subject => self.subject.clone().map(Into::into),
            IdentityField::Issuer => Some(self.issuer.clone().into()),
            IdentityField::Provider => Some(self.provider.clone().into()),
            IdentityField::Roles => list(&self.roles),
            IdentityField::Groups => list(&self.groups),
            IdentityField::Scopes => list(&self.scopes),
            IdentityField::Tenant => self.tenant.clone().map(Into::into),
            IdentityField::Binding => Some(self.binding.as_str().into()),
        }
    }
}

pub use crate::config::IdentityField;

/// How a verified token is bound to the client that sends it: a DPoP key (RFC 9449, the token's
/// `cnf.jkt`), a client certificate (RFC 8705, `cnf["x5t#S256"]`), or not at all (a bearer
/// token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenBinding {
    #[default]
    None,
    Dpop,
    Mtls,
}

impl TokenBinding {
    /// The name used in claim headers and the assertion's `binding` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenBinding::None => "none",
            TokenBinding::Dpop => "dpop",
            TokenBinding::Mtls => "mtls",
        }
    }
}

/// The first path that holds a string (numbers are taken as text).
fn first_string(claims: &Claims, paths: &[ClaimPath]) -> Option<String> {
    paths.iter().find_map(|p| match claims::lookup(claims, p)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Every string found under any of the paths (arrays, or space-delimited strings), without
/// duplicates, in order of appearance.
fn union(claims: &Claims, paths: &[ClaimPath]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for path in paths {
        if let Some(value) = claims::lookup(claims, path) {
            for item in claims::string_list(value) {
                if !out.contains(&item) {
                    out.push(item);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(identity: serde_json::Value) -> Provider {
        let v = json!({"name": "kc", "issuer": "https://kc.test", "jwks": {"keys": []}, "identity": identity});
        serde_json::from_value(v).unwrap()
    }

    fn claims(v: serde_json::Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_read_sub_roles_groups_and_both_scope_spellings() {
        let p = provider(json!({}));
        let id = Identity::from_claims(
            &p,
            claims(
                json!({"sub": "alice", "roles": ["admin"], "groups": ["ops"], "scope": "read write", "scp": ["write", "x"]}),
            ),
        );
        assert_eq!(id.subject.as_deref(), Some("alice"));
        assert_eq!(id.roles, vec!["admin"]);
        assert_eq!(id.groups, vec!["ops"]);
        assert_eq!(id.scopes, vec!["read", "write", "x"]);
        assert_eq!(id.tenant, None);
        assert_eq!(id.issuer, "https://kc.test");
        assert_eq!(id.provider, "kc");
    }

    #[test]
    fn keycloak_and_cognito_style_paths() {
        let p = provider(json!({
            "roles": ["realm_access.roles", "resource_access.api.roles"],
            "groups": ["cognito:groups"],
            "tenant": ["tid", "org.id"]
        }));
        let id = Identity::from_claims(
            &p,
            claims(json!({
                "sub": "u1",
                "realm_access": {"roles": ["a", "b"]},
                "resource_access": {"api": {"roles": ["b", "c"]}},
                "cognito:groups": ["g1"],
                "org": {"id": 42}
            })),
        );
        assert_eq!(id.roles, vec!["a", "b", "c"]);
        assert_eq!(id.groups, vec!["g1"]);
        assert_eq!(id.tenant.as_deref(), Some("42"));
    }

    #[test]
    fn kubernetes_service_account_claims_map_through_dotted_names() {
        let p = provider(json!({
            "subject": "kubernetes.io.serviceaccount.name",
            "groups": [["kubernetes.io", "serviceaccount", "name"]],
            "tenant": ["kubernetes.io.namespace"]
        }));
        let id = Identity::from_claims(
            &p,
            claims(json!({
                "sub": "system:serviceaccount:flows:prefect-worker",
                "kubernetes.io": {
                    "namespace": "flows",
                    "serviceaccount": {"name": "prefect-worker", "uid": "0d6e"}
                }
            })),
        );
        assert_eq!(id.subject.as_deref(), Some("prefect-worker"));
        assert_eq!(id.groups, vec!["prefect-worker"]);
        assert_eq!(id.tenant.as_deref(), Some("flows"));
    }

    #[test]
    fn wrong_types_give_empty_values_not_errors() {
        let p = provider(json!({"tenant": ["tid"]}));
        let id = Identity::from_claims(
            &p,
            claims(json!({"sub": ["x"], "roles": 5, "tid": {"a": 1}})),
        );
        assert_eq!(id.subject, None);
        assert!(id.roles.is_empty());
        assert_eq!(id.tenant, None);
    }
}
