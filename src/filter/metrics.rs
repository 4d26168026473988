//! Counters by outcome and reason. Defined only when `metrics.enabled` (Kong 3.4–3.7 trap on
//! metric host calls). Envoy lists them in `/stats` with its `wasmcustom.` prefix.
//!
//! A request's counts cost no host call: they are added up in the module and handed to the host
//! in one `proxy_increment_metric` per counter that moved (its offset the sum) on the root
//! context's timer (every `remote_keys.tick_ms`, 100 ms by default) or once [`FLUSH_EVERY`]
//! counts are waiting, whichever comes first. A counter read from the host thus lags by at most
//! one tick, and counts still waiting when the VM stops (at most one tick's or 63) are lost.
//! Counts made outside requests (a key skipped at configuration) go out at once.

use std::cell::{Cell, RefCell};

use super::host::{Host, Level, MetricKind};
use crate::reason::Reason;

/// Counts that may wait in the module before they are handed to the host.
pub const FLUSH_EVERY: u32 = 64;

/// Per-request counters, in slot order: `allowed`, `denied`, `report_only.would_deny`, then
/// `denied.<reason>` in the order of [`Reason::ALL`].
const ALLOWED: usize = 0;
const DENIED: usize = 1;
const WOULD_DENY: usize = 2;
const BY_REASON: usize = 3;

/// The counters of one configuration. No slot when metrics are off; a slot whose definition the
/// host refused has no id and is never handed over.
pub struct Metrics {
    /// The host's id of each slot.
    ids: Vec<Option<u32>>,
    weak_keys: Option<u32>,
    /// Counts not yet handed to the host, per slot.
    pending: RefCell<Vec<u64>>,
    /// Their sum.
    waiting: Cell<u32>,
}

impl Metrics {
    pub fn define(host: &impl Host, enabled: bool) -> Metrics {
        if !enabled {
            return Metrics::with(Vec::new(), None);
        }
        let counter = |name: &str| host.define_metric(MetricKind::Counter, name);
        let mut ids = vec![
            counter("identity_filter.allowed"),
            counter("identity_filter.denied"),
            counter("identity_filter.report_only.would_deny"),
        ];
        for r in Reason::ALL {
            ids.push(counter(&format!("identity_filter.denied.{}", r.code())));
        }
        Metrics::with(ids, counter("identity_filter.keys.weak_skipped"))
    }

    fn with(ids: Vec<Option<u32>>, weak_keys: Option<u32>) -> Metrics {
        Metrics {
            pending: RefCell::new(vec![0; ids.len()]),
            ids,
            weak_keys,
            waiting: Cell::new(0),
        }
    }

    /// Whether counters are defined (the root context then needs a timer to flush them).
    pub fn enabled(&self) -> bool {
        !self.ids.is_empty()
    }

    fn count(&self, host: &impl Host, slot: usize) {
        let counted = match self.pending.borrow_mut().get_mut(slot) {
            Some(n) => {
                *n += 1;
                true
            }
            None => false,
        };
        if counted {
            let waiting = self.waiting.get() + 1;
            self.waiting.set(waiting);
            if waiting >= FLUSH_EVERY {
                self.flush(host);
            }
        }
    }

    /// Hand the waiting counts to the host: one call per counter that moved.
    pub fn flush(&self, host: &impl Host) {
        if self.waiting.replace(0) == 0 {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        for (n, id) in pending.iter_mut().zip(&self.ids) {
            if let (Some(id), true) = (id, *n > 0) {
                host.increment_metric(*id, *n);
            }
            *n = 0;
        }
    }

    /// A report-only rule would have refused this request.
    pub fn would_deny(&self, host: &impl Host) {
        self.count(host, WOULD_DENY);
    }

    /// An RSA key shorter than its provider's `min_rsa_bits` was left out of a key set (at
    /// configuration or when a key set arrives: counted at once).
    pub fn weak_key_skipped(&self, host: &impl Host) {
        if let Some(id) = self.weak_keys {
            host.increment_metric(id, 1);
        }
    }

    pub fn allowed(&self, host: &impl Host) {
        self.count(host, ALLOWED);
    }

    pub fn denied(&self, host: &impl Host, reason: Reason) {
        self.count(host, DENIED);
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.count(host, BY_REASON + i);
        }
    }
}

/// One warning line and one count per RSA key left out of a key set for its size.
pub fn report_weak_keys(
    host: &impl Host,
    metrics: &Metrics,
    provider: &str,
    weak: &[crate::jwks::WeakKey],
    min_rsa_bits: usize,
) {
    for key in weak {
        host.log(
            Level::Warn,
            &format!(
                "identity filter: provider \"{provider}\" key {key} (min_rsa_bits \
                 {min_rsa_bits}): skipped, its tokens get key_not_found"
            ),
        );
        metrics.weak_key_skipped(host);
    }
}
