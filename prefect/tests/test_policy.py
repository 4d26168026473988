"""The dispatcher's policy: parsing (strict, with paths) and decisions (default deny)."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity_dispatcher.assertion import Identity
from identity_dispatcher.policy import PolicyError, load_policy, parse_policy
from identity_dispatcher.reasons import Refusal
from identity_devkit.testing import EXAMPLE_POLICY
from people import ADMIN, ALICE, BLOCKED, ERIN, GINA, IDP, MALLORY

POLICY = load_policy(str(Path(__file__).parent / "policy.yaml"))


def identity(person, **changes) -> Identity:
    fields = dict(sub=person.sub, idp=person.idp, provider=person.provider, roles=person.roles,
                  groups=person.groups, scopes=person.scopes, tenant=person.tenant)
    fields.update(changes)
    return Identity(**fields)


def denial(who: Identity, deployment: str) -> Refusal:
    with pytest.raises(Refusal) as caught:
        POLICY.decide(who, deployment)
    return caught.value


def test_first_applicable_rule_allows():
    assert POLICY.decide(identity(ALICE), "hello/hello").name == "hello-runners"
    assert POLICY.decide(identity(ERIN), "echo/echo").name == "echo-team"
    assert POLICY.decide(identity(ADMIN), "anything/else").name == "admins"


def test_caller_without_the_role_is_denied_by_the_rule_of_the_deployment():
    refusal = denial(identity(MALLORY), "hello/hello")
    assert (refusal.status, refusal.code, refusal.rule) == (403, "forbidden", "hello-runners")
    assert refusal.header_value() == "forbidden; rule=hello-runners"


def test_all_of_scopes_must_be_present():
    refusal = denial(identity(ALICE, scopes=()), "hello/hello")
    assert refusal.rule == "hello-runners"


def test_issuer_glob_is_checked():
    assert denial(identity(ALICE, idp="https://evil.test/realms/main"), "hello/hello").code == "forbidden"


def test_tenant_condition_needs_a_tenant():
    assert denial(identity(ERIN, tenant=None), "echo/echo").rule == "echo-team"
    assert denial(identity(GINA), "echo/echo").rule == "echo-team"


def test_deny_rule_wins_when_it_comes_first():
    assert denial(identity(BLOCKED), "hello/hello").rule == "blocked-tenant"


def test_deployment_no_rule_mentions_is_denied_by_default():
    policy = parse_policy({"rules": [{"name": "only-hello", "deployments": ["hello/*"]}]})
    with pytest.raises(Refusal) as caught:
        policy.decide(identity(ALICE), "secret/deploy")
    assert caught.value.rule == "default"


def test_rule_failed_by_the_caller_is_named_not_a_catch_all_matching_later():
    # admins (*/*) also matches, but the first allow rule for the deployment is the useful name.
    assert denial(identity(MALLORY), "echo/echo").rule == "echo-team"


def test_parameters_outside_the_rule_are_refused():
    rule = POLICY.decide(identity(ALICE), "hello/hello")
    assert rule.name == "hello-runners" and rule.parameters == ("name",)
    assert POLICY.check_parameters(rule, {"name": "x"}) is None  # allowed: no Refusal
    with pytest.raises(Refusal) as caught:
        POLICY.check_parameters(rule, {"name": "x", "shell": "rm -rf /"})
    assert caught.value.code == "parameter_forbidden"
    assert caught.value.rule == "hello-runners"
    assert "shell" in caught.value.detail


def test_wildcard_parameters_allow_all():
    rule = POLICY.decide(identity(ADMIN), "echo/echo")
    assert rule.name == "admins" and rule.parameters == ("*",)
    odd = {"anything": 1, "shell": "rm -rf /", "": None, "a.b[0]": [], "ä": {}}
    assert POLICY.check_parameters(rule, odd) is None  # allowed: no Refusal
    assert all(rule.allows_parameter(name) for name in odd)
    # The same parameters under a rule that lists its own are refused, all but `name`.
    with pytest.raises(Refusal) as caught:
        POLICY.check_parameters(POLICY.decide(identity(ALICE), "hello/hello"), {**odd, "name": "x"})
    assert caught.value.code == "parameter_forbidden"
    assert caught.value.detail == "not allowed: , a.b[0], anything, shell, ä"


def test_example_policy_is_valid():
    policy = load_policy(str(EXAMPLE_POLICY))
    assert [r.name for r in policy.rules] == ["blocked-tenant", "hello-runners", "admins"]


@pytest.mark.parametrize(
    "document,path",
    [
        ({"rules": [{"name": "a", "deployments": ["x"], "role": ["r"]}]}, "rules[0].role"),
        ({"rules": [{"name": "a"}]}, "rules[0].deployments"),
        ({"rules": [{"deployments": ["x"]}]}, "rules[0].name"),
        ({"rules": [{"name": "a", "deployments": []}]}, "rules[0].deployments"),
        ({"rules": [{"name": "a", "deployments": ["x"], "roles": {"anyof": ["r"]}}]}, "rules[0].roles.anyof"),
        ({"rules": [{"name": "a", "deployments": ["x"], "roles": {"any_of": "r r"}}]}, None),
        ({"rules": [{"name": "a", "deployments": ["x"], "effect": "maybe"}]}, "rules[0].effect"),
        ({"rules": [{"name": "a", "deployments": ["x"], "read": "all"}]}, "rules[0].read"),
        ({"rules": [{"name": "a", "deployments": ["x"], "require_binding": ["none"]}]}, "rules[0].require_binding"),
        ({"rules": [{"name": "a", "deployments": ["x"], "require_binding": []}]}, "rules[0].require_binding"),
        ({"rules": [{"name": "a", "deployments": ["x"], "require_binding": True}]}, "rules[0].require_binding"),
        ({"rules": [{"name": "a", "deployments": ["x"], "effect": "deny", "require_binding": ["dpop"]}]},
         "rules[0].require_binding"),
        ({"rules": [{"name": "a", "deployments": ["x"]}, {"name": "a", "deployments": ["y"]}]}, "rules[1].name"),
        ({"rules": [{"name": "default", "deployments": ["x"]}]}, "rules[0].name"),
        ({"default": "allow", "rules": []}, "default"),
        ({"version": 2, "rules": []}, "version"),
        ({"rulez": []}, "rulez"),
        ([], ""),
    ],
)
def test_invalid_policy_names_the_field(document, path):
    if path is None:  # a plain string is accepted as a one-element list
        parse_policy(document)
        return
    with pytest.raises(PolicyError) as caught:
        parse_policy(document)
    assert caught.value.path == path


def test_policy_file_may_be_json(tmp_path):
    file = tmp_path / "policy.json"
    file.write_text('{"rules": [{"name": "r", "deployments": ["a/b"], "subjects": ["alice"]}]}')
    policy = load_policy(str(file))
    assert policy.decide(identity(ALICE), "a/b").name == "r"


# -- sender-constrained tokens ---------------------------------------------------------------

BOUND = parse_policy({"rules": [
    {"name": "bound-etl", "deployments": ["etl/*"], "dags": ["etl_*"], "roles": ["flow-runner"],
     "require_binding": ["dpop", "mtls"]},
    {"name": "dpop-only", "deployments": ["report/*"], "roles": ["flow-runner"], "require_binding": "dpop"},
    {"name": "any-token", "deployments": ["hello/*"], "roles": ["flow-runner"]},
]})


@pytest.mark.parametrize("kind,target", [("deployment", "etl/nightly"), ("dag", "etl_nightly")])
def test_a_rule_requiring_a_bound_token_refuses_an_unbound_one_for_deployments_and_dags(kind, target):
    for binding in ("dpop", "mtls"):
        assert BOUND.decide(identity(ALICE, binding=binding), target, kind).name == "bound-etl"
    with pytest.raises(Refusal) as caught:
        BOUND.decide(identity(ALICE, binding="none"), target, kind)
    refusal = caught.value
    assert (refusal.status, refusal.code, refusal.rule) == (403, "binding_required", "bound-etl")
    assert refusal.header_value() == "binding_required; rule=bound-etl"
    assert "none" in refusal.detail and "detail" not in refusal.body()


def test_a_binding_outside_the_rules_list_is_refused_and_rules_without_it_accept_any():
    assert BOUND.decide(identity(ALICE, binding="dpop"), "report/report").name == "dpop-only"
    with pytest.raises(Refusal) as caught:
        BOUND.decide(identity(ALICE, binding="mtls"), "report/report")
    assert caught.value.code == "binding_required"
    for binding in ("none", "dpop", "mtls"):
        assert BOUND.decide(identity(ALICE, binding=binding), "hello/hello").name == "any-token"


def test_the_binding_is_checked_only_once_the_callers_conditions_hold():
    # A caller without the role is forbidden as before: the binding tells them nothing more.
    with pytest.raises(Refusal) as caught:
        BOUND.decide(identity(MALLORY, binding="none"), "etl/nightly")
    assert (caught.value.code, caught.value.rule) == ("forbidden", "bound-etl")


def test_an_assertion_without_the_binding_claim_counts_as_unbound():
    from identity_dispatcher.assertion import identity_from_claims

    claims = {"sub": "alice", "idp": IDP, "roles": ["flow-runner"], "req": {"method": "POST", "path": "/x"}}
    assert identity_from_claims(claims).binding == "none"
    assert identity_from_claims({**claims, "binding": "dpop"}).binding == "dpop"
    with pytest.raises(Refusal) as caught:
        identity_from_claims({**claims, "binding": 1})
    assert caught.value.code == "assertion_invalid"
    with pytest.raises(Refusal):
        BOUND.decide(identity_from_claims(claims), "etl/nightly")
