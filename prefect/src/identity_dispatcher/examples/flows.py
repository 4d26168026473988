"""Example flows for the dispatcher, served without a work pool.

``python -m identity_dispatcher.examples.flows`` (with ``PREFECT_API_URL`` set) serves:

- ``hello/hello``: greets ``name``; declares ``requested_by``, so the dispatcher fills it with the
  verified caller (a dict: ``sub``, ``issuer``, ``tenant``, ``provider``);
- ``echo/echo``: returns ``message``; declares no ``requested_by``, so none is added (the caller
  is still recorded in the run's tags and labels).
"""

from __future__ import annotations

from prefect import flow, serve


@flow(log_prints=True)
def hello(name: str = "world", requested_by: dict[str, str] | None = None) -> str:
    caller = (requested_by or {}).get("sub", "nobody")
    print(f"hello {name}, asked by {caller}")
    return f"hello {name}"


@flow(log_prints=True)
def echo(message: str = "hi") -> str:
    print(message)
    return message


def main() -> None:
    serve(
        hello.to_deployment(name="hello", tags=["example"]),
        echo.to_deployment(name="echo", tags=["example"]),
    )


if __name__ == "__main__":
    main()
