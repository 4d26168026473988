//! Counters by outcome and reason. Defined only when `metrics.enabled` (Kong 3.4–3.7 trap on
//! metric host calls). Envoy lists them in `/stats` with its `wasmcustom.` prefix.

use super::host::{Host, MetricKind};
use crate::reason::Reason;

/// Metric ids; all `None` when metrics are off or the host refused to define them.
pub struct Metrics {
    allowed: Option<u32>,
    denied: Option<u32>,
    by_reason: Vec<(Reason, u32)>,
    would_deny: Option<u32>,
    weak_keys: Option<u32>,
}

fn increment(host: &impl Host, id: Option<u32>) {
    if let Some(id) = id {
        host.increment_metric(id);
    }
}

impl Metrics {
    pub fn define(host: &impl Host, enabled: bool) -> Metrics {
        if !enabled {
            return Metrics {
                allowed: None,
                denied: None,
                by_reason: Vec::new(),
                would_deny: None,
                weak_keys: None,
            };
        }
        let counter = |name: &str| host.define_metric(MetricKind::Counter, name);
        Metrics {
            allowed: counter("identity_filter.allowed"),
            denied: counter("identity_filter.denied"),
            by_reason: Reason::ALL
                .iter()
                .filter_map(|r| {
                    Some((
                        *r,
                        counter(&format!("identity_filter.denied.{}", r.code()))?,
                    ))
                })
                .collect(),
            would_deny: counter("identity_filter.report_only.would_deny"),
            weak_keys: counter("identity_filter.keys.weak_skipped"),
        }
    }

    /// A report-only rule would have refused this request.
    pub fn would_deny(&self, host: &impl Host) {
        increment(host, self.would_deny);
    }

    /// An RSA key shorter than its provider's `min_rsa_bits` was left out of a key set.
    pub fn weak_key_skipped(&self, host: &impl Host) {
        increment(host, self.weak_keys);
    }

    pub fn allowed(&self, host: &impl Host) {
        increment(host, self.allowed);
    }

    pub fn denied(&self, host: &impl Host, reason: Reason) {
        increment(host, self.denied);
        increment(
            host,
            self.by_reason
                .iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, id)| *id),
        );
    }
}
