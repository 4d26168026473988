"""The GatewayCredentials block without a server: exactly one identity per block, the token
source each kind gives, one cache per credentials in a process, and the run-id headers
outside a run. (Saved, loaded and used by served flows: test_outbound.py.)"""

from __future__ import annotations

import pytest
from prefect.blocks.system import Secret
from pydantic import ValidationError

from identity_dispatcher.prefect_gateway import GatewayCredentials, run_trace_headers
from identity_dispatcher.tokens import ClientCredentials, ProjectedTokenFile, StaticToken

BASE = {"gateway_url": "http://127.0.0.1:10000"}


@pytest.mark.parametrize("fields,message", [
    ({}, "exactly one of client_id"),
    ({"client_id": "c", "token_file": "/t"}, "exactly one of client_id"),
    ({"client_id": "c", "issuer": "http://idp"}, "exactly one of client_secret and private_key_file"),
    ({"client_id": "c", "issuer": "http://idp", "private_key_file": "/k", "client_secret": Secret(value="s")},
     "exactly one of client_secret and private_key_file"),
    ({"client_id": "c", "private_key_file": "/k"}, "issuer or discovery_url"),
    ({"token_file": "/t", "dpop": True}, "dpop needs client credentials"),
    ({"static_token": Secret(value="legacy"), "dpop": True}, "dpop needs client credentials"),
])
def test_one_identity_per_block(fields, message):
    with pytest.raises(ValidationError, match=message):
        GatewayCredentials(**BASE, **fields)


def test_each_kind_gives_its_source_and_one_cache_per_credentials(tmp_path):
    secret = GatewayCredentials(**BASE, issuer="http://idp", client_id="c", client_secret=Secret(value="s3cret-value"),
                                scopes=["a"], resource="api://x")
    source = secret.token_source()
    assert isinstance(source, ClientCredentials) and source.auth_method == "client_secret_basic"
    assert source.resources == ("api://x",) and source.scopes == ("a",)
    keyed = GatewayCredentials(**BASE, issuer="http://idp", client_id="c", private_key_file=str(tmp_path / "k.pem"))
    assert keyed.token_source().auth_method == "private_key_jwt"
    assert isinstance(GatewayCredentials(**BASE, token_file="/var/run/secrets/tokens/gw").token_source(),
                      ProjectedTokenFile)
    assert isinstance(GatewayCredentials(**BASE, static_token=Secret(value="legacy")).token_source(), StaticToken)
    # The same credentials share one cache (one token, one refresh) in a process; others do not.
    again = GatewayCredentials(**BASE, issuer="http://idp", client_id="c", client_secret=Secret(value="s3cret-value"),
                               scopes=["a"], resource="api://x")
    assert again.token_cache() is secret.token_cache()
    assert keyed.token_cache() is not secret.token_cache()
    rotated = GatewayCredentials(**BASE, issuer="http://idp", client_id="c", client_secret=Secret(value="new-secret"),
                                 scopes=["a"], resource="api://x")
    assert rotated.token_cache() is not secret.token_cache()
    assert "s3cret-value" not in repr(secret) + repr(secret.client()) + repr(secret.token_cache())


def test_dpop_is_off_by_default_and_on_asks_for_bound_tokens_in_a_cache_of_its_own():
    fields = dict(**BASE, issuer="http://idp", client_id="c", client_secret=Secret(value="s3cret-value"))
    plain, bound = GatewayCredentials(**fields), GatewayCredentials(**fields, dpop=True)
    assert plain.dpop is False and plain.token_source().dpop is False
    source = bound.token_source()
    assert source.dpop is True and "DPoP" in source.describe()
    # Bearer and DPoP-bound tokens of one client never share a cache.
    assert bound.token_cache() is not plain.token_cache()
    assert bound.token_cache() is GatewayCredentials(**fields, dpop=True).token_cache()
    assert "dpop" in GatewayCredentials.model_json_schema()["properties"]


def test_trace_headers_outside_a_run():
    headers = run_trace_headers()
    assert set(headers) == {"x-request-id"} and headers["x-request-id"].startswith("none.flow.")
    assert run_trace_headers()["x-request-id"] != headers["x-request-id"]
