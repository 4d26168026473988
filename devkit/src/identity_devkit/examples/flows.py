"""Example flows for the dispatcher, served without a work pool.

``python -m identity_devkit.examples.flows`` (with ``PREFECT_API_URL`` set) serves:

- ``hello/hello``: greets ``name``; declares ``requested_by``, so the dispatcher fills it with the
  verified caller (a dict: ``sub``, ``issuer``, ``tenant``, ``provider``);
- ``echo/echo``: returns ``message``; declares no ``requested_by``, so none is added (the caller
  is still recorded in the run's tags and labels);
- ``report/report``: calls ``GET /api/reports/today`` back through the gateway with the flow's
  *own* identity: a short-lived client-credentials token from the IdP, configured by the
  ``GatewayCredentials`` block named ``credentials`` (``make run-prefect`` saves one). Every call
  carries the flow and task run ids. It returns what the API saw (never the token).
"""

from __future__ import annotations

from prefect import flow, serve, task

from identity_dispatcher.client import retry_on_retryable
from identity_dispatcher.prefect_gateway import GatewayCredentials


@flow(log_prints=True)
def hello(name: str = "world", requested_by: dict[str, str] | None = None) -> str:
    caller = (requested_by or {}).get("sub", "nobody")
    print(f"hello {name}, asked by {caller}")
    return f"hello {name}"


@flow(log_prints=True)
def echo(message: str = "hi") -> str:
    print(message)
    return message


@task(retries=3, retry_delay_seconds=[2, 5, 10], retry_condition_fn=retry_on_retryable)
def fetch_report(credentials: str) -> dict[str, str | None]:
    with GatewayCredentials.load(credentials).client() as gateway:
        seen = gateway.get("/api/reports/today").json()["headers"]
    return {"caller": seen.get("x-identity-subject"), "provider": seen.get("x-identity-provider"),
            "flow_run_id": seen.get("x-prefect-flow-run-id"), "request_id": seen.get("x-request-id")}


@flow(log_prints=True)
def report(credentials: str = "report-gateway", requested_by: dict[str, str] | None = None) -> dict:
    seen = fetch_report(credentials)
    print(f"report asked by {(requested_by or {}).get('sub', 'nobody')}; the API saw the flow as "
          f"{seen['caller']} ({seen['provider']}), run {seen['flow_run_id']}")
    return seen


def main() -> None:
    serve(
        hello.to_deployment(name="hello", tags=["example"]),
        echo.to_deployment(name="echo", tags=["example"]),
        report.to_deployment(name="report", tags=["example"]),
    )


if __name__ == "__main__":
    main()
