"""The project's development kit: what the tests, the local dev stacks (`make run`, `make
run-prefect`, `make run-airflow`), the benchmark and the examples share. Never part of the
dispatcher's runtime package (``identity_dispatcher``), whose wheel ships none of it.

Modules, one job each:

- :mod:`.jwk` — base64url, keys as JWKs and JWK Sets, raw JWS signing (hostile tokens too)
- :mod:`.issuer` — a signing key with its kid and algorithm: its JWKS and the tokens it signs;
  the token issuer of the dev stacks (``tools/devissuer.py``), the Envoy tests
  (``tests/support.py``) and the dispatcher's tests (:class:`.testing.TokenIssuer`)
- :mod:`.supervised` — a child process with a work directory, a log, a bounded stop and an
  ``atexit`` stop (Envoy, the OpenID provider, Prefect, Airflow, the dispatcher)
- :mod:`.gateway` — the identity filter's configuration in front of the dispatcher
- :mod:`.testing` — a real Prefect server, served flows, a dispatcher, an assertion minter and
  callers (direct and through the gateway)
- :mod:`.pytest_plugin` — pytest fixtures for that chain (``pytest_plugins = [...]``)
- :mod:`.airflow_testing` — a real Airflow on SQLite
- :mod:`.chain` — ``python -m identity_devkit.chain``: the Prefect side up locally
- :mod:`.mint` — ``python -m identity_devkit.mint``: an assertion signed with a development key
- :mod:`.examples` — the example flows and policy
"""
