"""Prefect (and Airflow) side of the identity filter.

Modules, one job each:

- :mod:`.config` — settings from the environment
- :mod:`.keys` — verification keys: HS256 secret, JWKS file, JWKS URL (cached, rotated)
- :mod:`.assertion` — verify the filter's signed assertion into an :class:`Identity`
- :mod:`.policy` — which identities may run which deployment with which parameters
- :mod:`.runs` — tags, labels, ``requested_by``, idempotency key and visibility of a run
- :mod:`.prefect_api` — the Prefect REST calls, with retries of transient failures
- :mod:`.reasons` — every refusal: code, status, message, reason header and body
- :mod:`.decisions` — one JSON log line per decision
- :mod:`.app` — the ASGI service (``python -m identity_dispatcher``)
- :mod:`.client` — for flows calling APIs through the gateway: typed errors with reason codes
- :mod:`.tokens` — the flows' own short-lived tokens: sources (client credentials, projected
  token file, static) and the cache that renews them (no Prefect import)
- :mod:`.prefect_gateway` — the ``GatewayCredentials`` block and the run ids every call carries
- :mod:`.events` — the dispatcher's decisions as Prefect events
- :mod:`.airflow_api`, :mod:`.airflow_backend` — the Airflow backend (``DISPATCHER_BACKEND=airflow``)
- :mod:`.airflow_hook`, :mod:`.airflow_provider` — the Airflow task hook and its connection type

The gateway's configuration, the test harness, the pytest fixtures, the example flows and a
development assertion minter are the repository's dev kit (``identity_devkit``), not this package.
"""

from .assertion import CONTRACT_VERSION, Identity, verify_assertion
from .reasons import Refusal

__all__ = ["CONTRACT_VERSION", "Identity", "Refusal", "verify_assertion"]
__version__ = "0.1.0"
