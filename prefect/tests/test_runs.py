"""What a run records about its caller; what a caller may send; who may read a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity_dispatcher.assertion import Identity
from identity_dispatcher.policy import load_policy
from identity_dispatcher.reasons import Refusal
from identity_dispatcher.runs import (
    check_body,
    idempotency_key,
    may_read,
    requested_by_value,
    run_labels,
    run_tags,
)

POLICY = load_policy(str(Path(__file__).parent / "policy.yaml"))
ALICE = Identity(sub="alice", idp="https://idp.test/realms/main", provider="test", tenant="acme",
                 request_id="r-1", jti="j-1")
BOB = Identity(sub="bob", idp="https://idp.test/realms/main", tenant="acme")


def schema(requested_by: dict | None, definitions: dict | None = None) -> dict:
    properties = {"name": {"type": "string"}}
    if requested_by is not None:
        properties["requested_by"] = requested_by
    document = {"type": "object", "properties": properties}
    if definitions:
        document["definitions"] = definitions
    return document


def test_object_typed_requested_by_gets_a_dict():
    value = requested_by_value(schema({"anyOf": [{"type": "object"}, {"type": "null"}]}), ALICE)
    assert value == {"sub": "alice", "issuer": "https://idp.test/realms/main", "tenant": "acme",
                     "provider": "test"}


def test_model_typed_requested_by_gets_a_dict():
    s = schema({"$ref": "#/definitions/Caller"}, {"Caller": {"type": "object"}})
    assert isinstance(requested_by_value(s, ALICE), dict)


def test_string_typed_requested_by_gets_the_subject():
    assert requested_by_value(schema({"type": "string"}), ALICE) == "alice"
    assert requested_by_value(schema({}), ALICE) == "alice"


def test_undeclared_requested_by_is_not_added():
    assert requested_by_value(schema(None), ALICE) is None
    assert requested_by_value(None, ALICE) is None


def test_tags_record_subject_issuer_host_and_tenant():
    assert run_tags(ALICE) == ["identity:alice", "issuer:idp.test", "tenant:acme"]
    assert run_tags(Identity(sub="svc", idp="internal")) == ["identity:svc", "issuer:internal"]


def test_labels_record_the_full_issuer_and_rule():
    labels = run_labels(ALICE, "hello-runners")
    assert labels["identity.issuer"] == "https://idp.test/realms/main"
    assert labels["identity.rule"] == "hello-runners"
    assert labels["identity.request_id"] == "r-1"


def test_idempotency_key_depends_on_caller_deployment_and_request_id():
    key = idempotency_key(ALICE, "hello/hello")
    assert key == idempotency_key(ALICE, "hello/hello")
    assert key != idempotency_key(Identity(sub="bob", idp=ALICE.idp, request_id="r-1"), "hello/hello")
    assert key != idempotency_key(ALICE, "echo/echo")
    assert key != idempotency_key(Identity(sub="alice", idp=ALICE.idp, request_id="r-2"), "hello/hello")


def test_without_request_id_the_jti_is_the_key():
    a = Identity(sub="alice", idp="x", jti="j-1")
    assert idempotency_key(a, "d") != idempotency_key(Identity(sub="alice", idp="x", jti="j-2"), "d")


@pytest.mark.parametrize(
    "body,code",
    [
        ([], "body_invalid"),
        ("name", "body_invalid"),
        ({"job_variables": {"command": "id"}}, "job_variables_refused"),
        ({"requested_by": "root"}, "parameter_reserved"),
        ({"name": {"__prefect_kind": "workspace_variable", "variable_name": "x"}}, "parameter_template_refused"),
        ({"name": [{"deep": {"__prefect_kind": "jinja", "template": "{{ 1 }}"}}]}, "parameter_template_refused"),
    ],
)
def test_bodies_refused_whatever_the_policy(body, code):
    with pytest.raises(Refusal) as caught:
        check_body(body)
    assert caught.value.code == code


def test_plain_parameters_pass():
    assert check_body({"name": "x", "nested": {"a": [1, "__prefect_kind"]}}) == {
        "name": "x", "nested": {"a": [1, "__prefect_kind"]}}


def test_owner_may_read_other_callers_may_not():
    labels = run_labels(ALICE, "hello-runners")
    assert may_read(ALICE, labels, POLICY)
    assert not may_read(BOB, labels, POLICY)  # hello-runners: read owner


def test_same_subject_from_another_issuer_is_another_caller():
    labels = run_labels(ALICE, "hello-runners")
    assert not may_read(Identity(sub="alice", idp="https://idp.test/realms/other"), labels, POLICY)


def test_tenant_shared_rule_lets_the_tenant_read():
    labels = run_labels(ALICE, "echo-team")
    assert may_read(BOB, labels, POLICY)
    assert not may_read(Identity(sub="bob", idp=BOB.idp, tenant="other"), labels, POLICY)
    assert not may_read(Identity(sub="bob", idp="https://elsewhere", tenant="acme"), labels, POLICY)


def test_runs_without_identity_labels_are_visible_to_nobody():
    assert not may_read(ALICE, {"prefect.flow.id": "x"}, POLICY)
