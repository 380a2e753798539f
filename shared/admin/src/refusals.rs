//! Refused admin calls, told to the daemon (which audits them) at a bounded rate: a hostile
//! caller repeating a refused call gets one record per caller and method per window, and the
//! next record counts the repeats in between.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use trustdeck_process::clock::Clock;

/// One refused admin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The caller as far as it is known: `uid:N`, a SPIFFE ID, or `tcp:<address>` for a TCP
    /// caller without a client certificate.
    pub actor: String,
    /// The gRPC method, e.g. `CreateEntry`.
    pub method: String,
    /// Why it was refused (the message the caller got).
    pub why: String,
}

/// Where refusals go (a daemon's audit log); called on the request's task, so it must not
/// block.
#[derive(Clone)]
pub struct RefusalSink(pub Arc<dyn Fn(Refusal) + Send + Sync>);

impl std::fmt::Debug for RefusalSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefusalSink")
    }
}

/// A sink that logs refusals at the [`RefusalLimiter`]'s rate, for a daemon without an audit
/// log (the agent). Repeats of a caller that went quiet are not reported.
pub fn log_sink(clock: Arc<dyn Clock>) -> RefusalSink {
    let limiter = Mutex::new(RefusalLimiter::default());
    RefusalSink(Arc::new(move |refusal| {
        let now = clock.now();
        let due = limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(refusal, now);
        if let Some(r) = due {
            let Refusal { actor, method, why } = &r.refusal;
            tracing::warn!(%actor, %method, suppressed = r.suppressed, %why, "admin call refused");
        }
    }))
}

/// How often one caller's refusals of one method are recorded.
pub const REFUSAL_WINDOW: Duration = Duration::minutes(1);

/// How many (caller, method) pairs are remembered; refusals of further callers share one
/// slot (actor `others`), so the memory and the record rate stay bounded whatever the
/// callers.
pub const MAX_REFUSAL_KEYS: usize = 1024;

/// The actor of refusals counted in the shared slot once [`MAX_REFUSAL_KEYS`] is reached.
pub const OTHERS: &str = "others";

/// A refusal to record now, with the repeats suppressed since the previous record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToRecord {
    pub refusal: Refusal,
    /// Refusals of this caller and method not recorded since its last record.
    pub suppressed: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    recorded_at: DateTime<Utc>,
    suppressed: u64,
    /// The latest refusal, for a record of repeats that [`RefusalLimiter::flush`] writes.
    last: Refusal,
}

/// Decides which refusals are recorded: the first of a caller and method, then at most one
/// per [`REFUSAL_WINDOW`], carrying the count of those in between; [`flush`](Self::flush)
/// reports the repeats of callers that went quiet. Pure: `now` is passed in.
#[derive(Debug)]
pub struct RefusalLimiter {
    window: Duration,
    max_keys: usize,
    slots: HashMap<(String, String), Slot>,
}

impl Default for RefusalLimiter {
    fn default() -> Self {
        Self::new(REFUSAL_WINDOW, MAX_REFUSAL_KEYS)
    }
}

impl RefusalLimiter {
    /// A limiter recording one refusal per caller and method per `window`, remembering at
    /// most `max_keys` callers and methods (at least two: one is the shared slot).
    pub fn new(window: Duration, max_keys: usize) -> Self {
        Self {
            window,
            max_keys: max_keys.max(2),
            slots: HashMap::new(),
        }
    }

    /// What to record for `refusal` at `now`, if anything.
    pub fn note(&mut self, mut refusal: Refusal, now: DateTime<Utc>) -> Option<ToRecord> {
        let mut key = (refusal.actor.clone(), refusal.method.clone());
        if !self.slots.contains_key(&key) && self.slots.len() >= self.max_keys - 1 {
            self.forget_quiet(now);
            if self.slots.len() >= self.max_keys - 1 {
                key.0 = OTHERS.to_string();
                refusal.actor = OTHERS.to_string();
            }
        }
        let window = self.window;
        match self.slots.get_mut(&key) {
            Some(slot) if now < slot.recorded_at + window => {
                slot.suppressed += 1;
                slot.last = refusal;
                None
            }
            Some(slot) => {
                let suppressed = std::mem::take(&mut slot.suppressed);
                slot.recorded_at = now;
                slot.last = refusal.clone();
                Some(ToRecord {
                    refusal,
                    suppressed,
                })
            }
            None => {
                let slot = Slot {
                    recorded_at: now,
                    suppressed: 0,
                    last: refusal.clone(),
                };
                self.slots.insert(key, slot);
                Some(ToRecord {
                    refusal,
                    suppressed: 0,
                })
            }
        }
    }

    /// The repeats not yet recorded of callers whose window has passed (to call about once
    /// per window), and forgets callers with nothing left to report.
    pub fn flush(&mut self, now: DateTime<Utc>) -> Vec<ToRecord> {
        let window = self.window;
        let mut out = Vec::new();
        for slot in self.slots.values_mut() {
            if slot.suppressed > 0 && now >= slot.recorded_at + window {
                out.push(ToRecord {
                    refusal: slot.last.clone(),
                    suppressed: std::mem::take(&mut slot.suppressed),
                });
                slot.recorded_at = now;
            }
        }
        self.forget_quiet(now);
        out.sort_by(|a, b| {
            (&a.refusal.actor, &a.refusal.method).cmp(&(&b.refusal.actor, &b.refusal.method))
        });
        out
    }

    /// Forgets callers whose window has passed with no repeat left to report.
    fn forget_quiet(&mut self, now: DateTime<Utc>) {
        let window = self.window;
        self.slots
            .retain(|_, slot| slot.suppressed > 0 || now < slot.recorded_at + window);
    }

    /// How many callers and methods are remembered.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(actor: &str, method: &str) -> Refusal {
        Refusal {
            actor: actor.into(),
            method: method.into(),
            why: "no".into(),
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("time")
    }

    #[test]
    fn one_record_per_caller_and_method_per_window_with_the_repeats_counted() {
        let mut l = RefusalLimiter::default();
        assert_eq!(
            l.note(r("uid:7", "CreateEntry"), t(0))
                .map(|x| x.suppressed),
            Some(0)
        );
        let within: Vec<_> = (1..1000)
            .filter_map(|i| l.note(r("uid:7", "CreateEntry"), t(i % 60)))
            .collect();
        assert!(within.is_empty(), "{within:?}");
        // Another method or caller has its own slot.
        assert!(l.note(r("uid:7", "DeleteEntry"), t(1)).is_some());
        assert!(l.note(r("uid:8", "CreateEntry"), t(1)).is_some());
        let next = l
            .note(r("uid:7", "CreateEntry"), t(60))
            .expect("a new window");
        assert_eq!(next.suppressed, 999);
        assert_eq!(next.refusal.actor, "uid:7");
        assert!(l.note(r("uid:7", "CreateEntry"), t(61)).is_none());
    }

    #[test]
    fn many_callers_share_one_slot_so_records_and_memory_stay_bounded() {
        let mut l = RefusalLimiter::new(REFUSAL_WINDOW, 8);
        let recorded = (0..10_000)
            .filter_map(|i| l.note(r(&format!("uid:{i}"), "Watch"), t(0)))
            .collect::<Vec<_>>();
        // 7 callers of their own, then one record for all the others.
        assert_eq!(recorded.len(), 8);
        assert_eq!(recorded[7].refusal.actor, OTHERS);
        assert!(l.len() <= 8);
        // A window later the shared slot reports every repeat.
        let flushed = l.flush(t(60));
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].refusal.actor, OTHERS);
        assert_eq!(flushed[0].suppressed, 10_000 - 8);
    }

    #[test]
    fn quiet_callers_repeats_are_flushed_then_they_are_forgotten() {
        let mut l = RefusalLimiter::new(REFUSAL_WINDOW, 3);
        assert!(l.note(r("uid:1", "Watch"), t(0)).is_some());
        assert!(l.note(r("uid:1", "Watch"), t(1)).is_none());
        assert!(l.note(r("uid:2", "Watch"), t(2)).is_some());
        assert!(l.flush(t(30)).is_empty(), "within the window");
        // uid:2's window passed with nothing to report: forgotten, making room for uid:3.
        let third = l.note(r("uid:3", "Watch"), t(70)).expect("recorded");
        assert_eq!(third.refusal.actor, "uid:3");
        let flushed = l.flush(t(70));
        assert_eq!(flushed.len(), 1);
        assert_eq!(
            (flushed[0].refusal.actor.as_str(), flushed[0].suppressed),
            ("uid:1", 1)
        );
        assert!(l.flush(t(200)).is_empty());
        assert!(l.is_empty());
    }
}
