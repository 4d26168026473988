//! Applying a decision to the current (effective) HTTP context: header changes, a local answer,
//! the counters and the decision log line.

use super::host::{Host, Level};
use super::state::{State, Verdict};
use crate::decide::Decision;
use crate::engine::Engine;
use crate::headers::HeaderOp;
use crate::reason::{Denial, Reason, Response};

/// Answer the current (effective) HTTP context locally.
pub fn respond(host: &impl Host, response: &Response) -> Verdict {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    host.send_response(response.status, &headers, &response.body);
    Verdict::Pause
}

/// Change the current (effective) HTTP context's request headers.
fn apply(host: &impl Host, ops: &[HeaderOp]) {
    for op in ops {
        match op {
            HeaderOp::Remove(name) => host.set_request_header(name, None),
            HeaderOp::Set(name, value) => host.set_request_header(name, Some(value)),
        }
    }
}

/// Apply a decision to the current (effective) HTTP context. `Continue`: let the request go on
/// (a paused request must then be resumed); `Pause`: it was answered.
pub fn conclude(host: &impl Host, state: &State, engine: &Engine, decision: Decision) -> Verdict {
    match decision {
        Decision::Allow {
            ops,
            log: mut entry,
        } => {
            apply(host, &ops);
            state.metrics.allowed(host);
            if entry.report_only && entry.reason.is_some() {
                state.metrics.would_deny(host);
            }
            if !state.kind().removes_headers() && entry.token_removed == Some(true) {
                // The removal was asked for, but this host forwards the token anyway.
                entry.token_removed = Some(false);
            }
            if engine.config.log.decisions {
                host.log(Level::Info, &entry.to_json());
            }
            Verdict::Continue
        }
        Decision::Deny {
            response,
            log: entry,
        } => {
            if let Some(reason) = entry.reason {
                state.metrics.denied(host, reason);
            }
            if engine.config.log.decisions {
                host.log(Level::Info, &entry.to_json());
            }
            respond(host, &response)
        }
        Decision::Serve(response) => respond(host, &response),
        Decision::NeedKeys(_) => refuse(host, state, engine, Reason::KeysUnavailable),
    }
}

/// Refuse the current (effective) HTTP context with `reason` (a request that cannot get keys).
pub fn refuse(host: &impl Host, state: &State, engine: &Engine, reason: Reason) -> Verdict {
    let denial = Denial::new(reason);
    state.metrics.denied(host, reason);
    respond(host, &engine.render(&denial))
}
