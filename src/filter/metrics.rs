//! Counters by outcome and reason. Defined only when `metrics.enabled` (Kong 3.4–3.7 trap on
//! metric host calls). Envoy lists them in `/stats` with its `wasmcustom.` prefix.
//!
//! A request's counts cost no host call: they are added up in the module and handed to the host
//! in one `proxy_increment_metric` per counter that moved (its offset the sum) on the root
//! context's timer (every `remote_keys.tick_ms`, 100 ms by default) or once [`FLUSH_EVERY`]
//! counts are waiting, whichever comes first. A counter read from the host thus lags by at most
//! one tick. Counts made outside requests (a key skipped at configuration) go out at once.

use std::cell::{Cell, RefCell};

use super::host::{Host, MetricKind};
use crate::reason::Reason;

/// Counts that may wait in the module before they are handed to the host.
pub const FLUSH_EVERY: u32 = 64;

/// Metric ids; all `None` when metrics are off or the host refused to define them. Per-request
/// counters are slots in `ids`/`pending`.
pub struct Metrics {
    allowed: Option<usize>,
    denied: Option<usize>,
    /// Indexed like [`Reason::ALL`].
    by_reason: Vec<Option<usize>>,
    would_deny: Option<usize>,
    weak_keys: Option<u32>,
    /// The host's id of each slot.
    ids: Vec<u32>,
    /// Counts not yet handed to the host, per slot.
    pending: RefCell<Vec<u64>>,
    /// Their sum.
    waiting: Cell<u32>,
}

impl Metrics {
    pub fn define(host: &impl Host, enabled: bool) -> Metrics {
        let mut metrics = Metrics {
            allowed: None,
            denied: None,
            by_reason: Vec::new(),
            would_deny: None,
            weak_keys: None,
            ids: Vec::new(),
            pending: RefCell::new(Vec::new()),
            waiting: Cell::new(0),
        };
        if !enabled {
            return metrics;
        }
        let mut ids = Vec::new();
        let mut slot = |name: &str| {
            let id = host.define_metric(MetricKind::Counter, name)?;
            ids.push(id);
            Some(ids.len() - 1)
        };
        metrics.allowed = slot("identity_filter.allowed");
        metrics.denied = slot("identity_filter.denied");
        metrics.by_reason = Reason::ALL
            .iter()
            .map(|r| slot(&format!("identity_filter.denied.{}", r.code())))
            .collect();
        metrics.would_deny = slot("identity_filter.report_only.would_deny");
        metrics.weak_keys =
            host.define_metric(MetricKind::Counter, "identity_filter.keys.weak_skipped");
        metrics.pending = RefCell::new(vec![0; ids.len()]);
        metrics.ids = ids;
        metrics
    }

    /// Whether any counter is defined (the root context then needs a timer to flush them).
    pub fn enabled(&self) -> bool {
        !self.ids.is_empty()
    }

    fn count(&self, host: &impl Host, slot: Option<usize>) {
        let Some(slot) = slot else {
            return;
        };
        if let Some(n) = self.pending.borrow_mut().get_mut(slot) {
            *n += 1;
        }
        let waiting = self.waiting.get() + 1;
        self.waiting.set(waiting);
        if waiting >= FLUSH_EVERY {
            self.flush(host);
        }
    }

    /// Hand the waiting counts to the host: one call per counter that moved.
    pub fn flush(&self, host: &impl Host) {
        if self.waiting.get() == 0 {
            return;
        }
        self.waiting.set(0);
        let mut pending = self.pending.borrow_mut();
        for (n, id) in pending.iter_mut().zip(&self.ids) {
            if *n > 0 {
                host.increment_metric(*id, *n);
                *n = 0;
            }
        }
    }

    /// A report-only rule would have refused this request.
    pub fn would_deny(&self, host: &impl Host) {
        self.count(host, self.would_deny);
    }

    /// An RSA key shorter than its provider's `min_rsa_bits` was left out of a key set (at
    /// configuration or when a key set arrives: counted at once).
    pub fn weak_key_skipped(&self, host: &impl Host) {
        if let Some(id) = self.weak_keys {
            host.increment_metric(id, 1);
        }
    }

    pub fn allowed(&self, host: &impl Host) {
        self.count(host, self.allowed);
    }

    pub fn denied(&self, host: &impl Host, reason: Reason) {
        self.count(host, self.denied);
        let slot = Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.by_reason.get(i).copied().flatten());
        self.count(host, slot);
    }
}
