"""Every way the dispatcher refuses a request: one code, one status, one fixed message.

This is the single place where a refusal becomes an HTTP answer. The reason header has the
filter's format, ``<code>`` or ``<code>; rule=<name>``, and the JSON body is
``{"error": <code>, "status": <n>, "message": <text>, "rule": <name>?}``.
"""

from __future__ import annotations

from typing import Any

#: code → (status, message). The codes are a contract with clients, logs and retries.
REASONS: dict[str, tuple[int, str]] = {
    # 401: no trustworthy identity.
    "assertion_missing": (401, "no identity assertion was sent"),
    "assertion_invalid": (401, "the identity assertion is malformed or its signature does not verify"),
    "assertion_expired": (401, "the identity assertion has expired"),
    "assertion_not_yet_valid": (401, "the identity assertion was issued in the future"),
    "assertion_too_long": (401, "the identity assertion's lifetime exceeds the allowed maximum"),
    "assertion_issuer": (401, "the identity assertion was not issued by the trusted filter"),
    "assertion_audience": (401, "the identity assertion is meant for another service"),
    "assertion_version": (401, "the identity assertion has an unsupported contract version"),
    "assertion_binding": (401, "the identity assertion was issued for another method or path"),
    # 403: identity known, not allowed.
    "forbidden": (403, "the policy does not allow this caller to run this deployment"),
    "binding_required": (403, "the policy requires a sender-constrained (DPoP or mTLS) token for this deployment"),
    "parameter_forbidden": (403, "the policy does not allow this caller to set a parameter"),
    "parameter_reserved": (403, "a parameter is set by the dispatcher and cannot be sent"),
    "parameter_template_refused": (403, "parameter values may not contain Prefect templates"),
    "job_variables_refused": (403, "job variables can never be set through the dispatcher"),
    # Other client errors.
    "body_invalid": (400, "the request body must be a JSON object of flow parameters"),
    "body_too_large": (413, "the request body is too large"),
    "deployment_not_found": (404, "no such deployment"),
    "run_not_found": (404, "no such flow run"),
    "idempotency_conflict": (409, "this request id already started a run with other parameters"),
    "parameters_invalid": (422, "Prefect refused the parameters"),
    # Server side.
    "keys_unavailable": (503, "the assertion's verification keys are unavailable; retry later"),
    "prefect_unavailable": (503, "the Prefect API is unavailable; retry later"),
    "prefect_error": (502, "the Prefect API answered unexpectedly"),
    # Airflow backend (DISPATCHER_BACKEND=airflow).
    "dag_not_found": (404, "no such DAG"),
    "airflow_unavailable": (503, "the Airflow API is unavailable; retry later"),
    "airflow_error": (502, "the Airflow API answered unexpectedly"),
    "internal_error": (500, "the dispatcher failed unexpectedly"),
}

#: Codes whose detail may be shown to the caller: it only echoes what the caller sent. Others
#: (why a signature failed, whose run it is, internal URLs) stay in the decision log.
PUBLIC_DETAIL = frozenset({
    "parameter_forbidden", "parameter_template_refused", "parameters_invalid", "body_invalid",
    "body_too_large", "idempotency_conflict", "deployment_not_found", "dag_not_found",
})

#: Seconds suggested in ``Retry-After`` for 503 answers.
RETRY_AFTER_SECONDS = 5


class Refusal(Exception):
    """A request is refused with a stable reason code (and, for policy denials, a rule)."""

    def __init__(self, code: str, rule: str | None = None, detail: str | None = None) -> None:
        if code not in REASONS:
            raise ValueError(f"unknown reason code {code!r}")
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.rule = rule
        #: For logs (and for the body when safe); never contains secrets.
        self.detail = detail

    @property
    def status(self) -> int:
        return REASONS[self.code][0]

    @property
    def message(self) -> str:
        return REASONS[self.code][1]

    def header_value(self) -> str:
        return f"{self.code}; rule={self.rule}" if self.rule else self.code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "status": self.status, "message": self.message}
        if self.rule:
            body["rule"] = self.rule
        if self.detail and self.code in PUBLIC_DETAIL:
            body["detail"] = self.detail
        return body

    def headers(self, reason_header: str) -> dict[str, str]:
        headers = {reason_header: self.header_value(), "cache-control": "no-store"}
        if self.status == 503:
            headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        return headers
