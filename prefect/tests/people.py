"""The callers of the tests, as the filter would describe them."""

from __future__ import annotations

from identity_devkit.testing import CallerIdentity

IDP = "https://idp.test/realms/main"
#: An issuer whose keys the gateway cannot fetch (its JWKS server is down): 503 keys_unavailable.
DOWN_IDP = "https://idp-down.test/realms/main"


def person(sub: str, *roles: str, tenant: str | None = "acme", scopes=("runs:write",),
           idp: str = IDP) -> CallerIdentity:
    return CallerIdentity(sub=sub, idp=idp, provider="test", roles=tuple(roles),
                          scopes=tuple(scopes), tenant=tenant, groups=("staff",))


ALICE = person("alice", "flow-runner")
BOB = person("bob", "flow-runner")
MALLORY = person("mallory")
ERIN = person("erin", "echoer")
FRANK = person("frank", "echoer")
GINA = person("gina", "echoer", tenant="other")
BLOCKED = person("blocky", "flow-runner", tenant="blocked")
ADMIN = person("root", "flow-admin", tenant=None)
#: Allowed to run hello/* only with a sender-constrained token (rule sealed-runners).
SEALED = person("sealed", "sealed-runner")
STRANGER = person("stranger", "flow-runner", idp=DOWN_IDP)
