"""Which identities may run which deployment (Prefect) or DAG (Airflow), with which parameters
(a DAG run's ``conf`` keys), and who may read the runs.

The policy file is YAML or JSON (README.md, "Policy file"). It is strict: an unknown or mistyped
field stops the dispatcher with an error naming its path, e.g. ``rules[1].roles.any_of``.

Evaluation, for a caller and a deployment ``flow/deployment``:

* rules are read in order; a rule *applies* when one of its ``deployments`` globs (for a DAG:
  its ``dags`` globs) matches and every condition it states holds for the caller;
* the first rule that applies decides: ``effect: allow`` allows (with its ``parameters`` and
  ``read``), ``effect: deny`` refuses naming that rule;
* when no rule applies the request is refused (default deny), naming the first ``allow`` rule
  whose deployments matched (the caller failed its conditions), or ``default`` when none did;
* an allowing rule with ``require_binding`` (a list of ``dpop``, ``mtls``) then refuses with
  ``binding_required`` a caller whose token was not bound to its sender in one of those ways
  (the assertion's ``binding`` claim; an assertion without it counts as ``none``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import yaml

from .assertion import Identity
from .reasons import Refusal

DEFAULT_RULE = "default"


class PolicyError(ValueError):
    """The policy file is invalid; ``path`` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"invalid policy at {path or '<root>'}: {message}")
        self.path = path


@dataclass(frozen=True)
class SetCondition:
    """Conditions on a list of the caller's values (roles, groups or scopes)."""

    any_of: tuple[str, ...] = ()
    all_of: tuple[str, ...] = ()

    def holds(self, values: Iterable[str]) -> bool:
        have = set(values)
        if self.any_of and not have.intersection(self.any_of):
            return False
        return all(v in have for v in self.all_of)


@dataclass(frozen=True)
class Rule:
    name: str
    deployments: tuple[str, ...]
    effect: str = "allow"
    #: Airflow DAG ids (globs) the rule is about; ``deployments`` are Prefect's.
    dags: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    roles: SetCondition | None = None
    groups: SetCondition | None = None
    scopes: SetCondition | None = None
    #: Parameter names (globs) the caller may set; ``["*"]`` allows all, ``[]`` none.
    parameters: tuple[str, ...] = ()
    #: Who may read runs created under this rule: ``owner`` (same sub and idp) or ``tenant``.
    read: str = "owner"
    #: Token bindings (``dpop``, ``mtls``) of which the caller's token must have one; empty:
    #: any token, bound or not.
    require_binding: tuple[str, ...] = ()

    def matches_deployment(self, deployment: str) -> bool:
        return _any_glob(self.deployments, deployment)

    def matches(self, target: str, kind: str = "deployment") -> bool:
        """Whether the rule is about ``target``: a deployment (``flow/deployment``) or a DAG id."""
        return _any_glob(self.dags if kind == "dag" else self.deployments, target)

    def holds_for(self, identity: Identity) -> bool:
        if self.issuers and not _any_glob(self.issuers, identity.idp):
            return False
        if self.providers and not _any_glob(self.providers, identity.provider or ""):
            return False
        if self.subjects and not _any_glob(self.subjects, identity.sub):
            return False
        if self.tenants and (identity.tenant is None or not _any_glob(self.tenants, identity.tenant)):
            return False
        for condition, values in (
            (self.roles, identity.roles),
            (self.groups, identity.groups),
            (self.scopes, identity.scopes),
        ):
            if condition is not None and not condition.holds(values):
                return False
        return True

    def accepts_binding(self, binding: str) -> bool:
        return not self.require_binding or binding in self.require_binding

    def allows_parameter(self, name: str) -> bool:
        return _any_glob(self.parameters, name)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def decide(self, identity: Identity, deployment: str, kind: str = "deployment") -> Rule:
        """The allowing rule, or :class:`Refusal` ``forbidden`` naming the denying rule.
        ``kind`` is ``deployment`` (Prefect, ``flow/deployment``) or ``dag`` (an Airflow DAG id)."""
        first_for_deployment: Rule | None = None
        for rule in self.rules:
            if not rule.matches(deployment, kind):
                continue
            if rule.effect == "allow":
                first_for_deployment = first_for_deployment or rule
            if not rule.holds_for(identity):
                continue
            if rule.effect == "deny":
                raise Refusal("forbidden", rule=rule.name, detail=f"denied by rule {rule.name!r}")
            if not rule.accepts_binding(identity.binding):
                raise Refusal("binding_required", rule=rule.name,
                              detail=f"token binding {identity.binding!r}, the rule requires one of "
                                     + ", ".join(rule.require_binding))
            return rule
        name = first_for_deployment.name if first_for_deployment else DEFAULT_RULE
        raise Refusal("forbidden", rule=name, detail=f"no rule allows {deployment!r}")

    def check_parameters(self, rule: Rule, parameters: Mapping[str, Any]) -> None:
        refused = sorted(name for name in parameters if not rule.allows_parameter(name))
        if refused:
            raise Refusal(
                "parameter_forbidden",
                rule=rule.name,
                detail="not allowed: " + ", ".join(refused),
            )


def _any_glob(patterns: Iterable[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


_RULE_FIELDS = {
    "name", "deployments", "dags", "effect", "issuers", "providers", "subjects", "tenants",
    "roles", "groups", "scopes", "parameters", "read", "description", "require_binding",
}

#: The bindings a rule can require (the assertion's ``binding`` claim, other than ``none``).
BINDINGS = ("dpop", "mtls")


def _strings(value: Any, path: str, allow_empty: bool = True) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(path, "expected a list of non-empty strings")
    if not value and not allow_empty:
        raise PolicyError(path, "must not be empty")
    return tuple(value)


def _set_condition(value: Any, path: str) -> SetCondition:
    if isinstance(value, (list, str)):
        return SetCondition(any_of=_strings(value, path, allow_empty=False))
    if not isinstance(value, dict):
        raise PolicyError(path, "expected a list (any of) or an object with any_of / all_of")
    unknown = set(value) - {"any_of", "all_of"}
    if unknown:
        raise PolicyError(f"{path}.{sorted(unknown)[0]}", "unknown field (expected any_of, all_of)")
    if not value:
        raise PolicyError(path, "empty condition: give any_of and/or all_of")
    return SetCondition(
        any_of=_strings(value.get("any_of", []), f"{path}.any_of"),
        all_of=_strings(value.get("all_of", []), f"{path}.all_of"),
    )


def _rule(value: Any, path: str) -> Rule:
    if not isinstance(value, dict):
        raise PolicyError(path, "expected an object")
    unknown = set(value) - _RULE_FIELDS
    if unknown:
        raise PolicyError(f"{path}.{sorted(unknown)[0]}", "unknown field")
    name = value.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in ";,\r\n\" "):
        raise PolicyError(f"{path}.name", "required; a non-empty name without spaces, ';' or ','")
    if "deployments" not in value and "dags" not in value:
        raise PolicyError(f"{path}.deployments",
                          "required: flow/deployment names or globs (or dags: Airflow DAG ids)")
    effect = value.get("effect", "allow")
    if effect not in ("allow", "deny"):
        raise PolicyError(f"{path}.effect", "expected 'allow' or 'deny'")
    read = value.get("read", "owner")
    if read not in ("owner", "tenant"):
        raise PolicyError(f"{path}.read", "expected 'owner' or 'tenant'")
    if "description" in value and not isinstance(value["description"], str):
        raise PolicyError(f"{path}.description", "expected a string")
    require_binding: tuple[str, ...] = ()
    if "require_binding" in value:
        require_binding = _strings(value["require_binding"], f"{path}.require_binding", allow_empty=False)
        unknown_binding = [b for b in require_binding if b not in BINDINGS]
        if unknown_binding:
            raise PolicyError(f"{path}.require_binding",
                              f"unknown binding {unknown_binding[0]!r} (expected dpop, mtls)")
        if effect == "deny":
            raise PolicyError(f"{path}.require_binding", "only an allow rule can require a binding")
    return Rule(
        name=name,
        deployments=(_strings(value["deployments"], f"{path}.deployments", allow_empty=False)
                     if "deployments" in value else ()),
        effect=effect,
        dags=_strings(value["dags"], f"{path}.dags", allow_empty=False) if "dags" in value else (),
        issuers=_strings(value.get("issuers", []), f"{path}.issuers"),
        providers=_strings(value.get("providers", []), f"{path}.providers"),
        subjects=_strings(value.get("subjects", []), f"{path}.subjects"),
        tenants=_strings(value.get("tenants", []), f"{path}.tenants"),
        roles=_set_condition(value["roles"], f"{path}.roles") if "roles" in value else None,
        groups=_set_condition(value["groups"], f"{path}.groups") if "groups" in value else None,
        scopes=_set_condition(value["scopes"], f"{path}.scopes") if "scopes" in value else None,
        parameters=_strings(value.get("parameters", []), f"{path}.parameters"),
        read=read,
        require_binding=require_binding,
    )


def parse_policy(document: Any) -> Policy:
    if not isinstance(document, dict):
        raise PolicyError("", "expected an object with 'rules'")
    unknown = set(document) - {"version", "default", "rules"}
    if unknown:
        raise PolicyError(sorted(unknown)[0], "unknown field")
    if document.get("version", 1) != 1:
        raise PolicyError("version", "only version 1 exists")
    if document.get("default", "deny") != "deny":
        raise PolicyError("default", "only 'deny' is supported: list what is allowed")
    rules_value = document.get("rules", [])
    if not isinstance(rules_value, list):
        raise PolicyError("rules", "expected a list")
    rules = tuple(_rule(r, f"rules[{i}]") for i, r in enumerate(rules_value))
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen or rule.name == DEFAULT_RULE:
            raise PolicyError(f"rules[{i}].name", f"duplicate or reserved name {rule.name!r}")
        seen.add(rule.name)
    return Policy(rules=rules)


def load_policy(path: str) -> Policy:
    """Read a YAML or JSON policy file (JSON is YAML)."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        raise PolicyError("", f"cannot read {path}: {error}") from None
    except yaml.YAMLError as error:
        raise PolicyError("", f"{path} is not YAML/JSON: {error}") from None
    return parse_policy(document)
