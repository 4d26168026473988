"""The ``apache_airflow_provider`` entry point of this package: registers the
``identity_gateway`` connection type (:class:`identity_dispatcher.airflow_hook.GatewayHook`) with
Airflow's providers manager.

It imports nothing of Airflow: the providers manager calls it while Airflow itself is being
imported, so a module that imports Airflow (as ``airflow_hook`` does) would be read half-way.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: The connection type of :class:`identity_dispatcher.airflow_hook.GatewayHook`.
CONN_TYPE = "identity_gateway"


def get_provider_info() -> dict[str, Any]:
    """What Airflow's providers manager reads: the package and its connection type."""
    try:
        package_version = version("identity-dispatcher")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        package_version = "0"
    return {
        "package-name": "identity-dispatcher",
        "name": "Identity gateway",
        "description": "Calls through the identity gateway with the task's own short-lived identity.",
        "versions": [package_version],
        "connection-types": [
            {"hook-class-name": "identity_dispatcher.airflow_hook.GatewayHook", "connection-type": CONN_TYPE},
        ],
    }
