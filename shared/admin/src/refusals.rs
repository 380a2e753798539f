//! Refused admin calls, told to the daemon (which audits them) at a bounded rate: a hostile
//! caller repeating a refused call gets one record per caller and method per window, and the
//! next record counts the repeats in between. All callers together get at most
//! [`MAX_REFUSAL_RECORDS`] records per window; the rest are counted under [`OTHERS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use trustdeck_process::clock::Clock;

/// One refused admin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The caller as far as it is known: `uid:N`, a SPIFFE ID, or [`UNAUTHENTICATED_TCP`]
    /// for a TCP caller without a client certificate (one key for all of them, whatever
    /// their address: the address is in `why`).
    pub actor: String,
    /// The gRPC method, e.g. `CreateEntry`.
    pub method: String,
    /// Why it was refused (the message the caller got, and for a TCP caller without a
    /// certificate its address).
    pub why: String,
}

/// The actor of every TCP caller without a client certificate.
pub const UNAUTHENTICATED_TCP: &str = "tcp:unauthenticated";

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
/// log (the agent). The repeats of callers that went quiet are logged with the first refusal
/// a window after the last flush ([`RefusalLimiter::note_flushing`]).
pub fn log_sink(clock: Arc<dyn Clock>) -> RefusalSink {
    let limiter = Mutex::new(RefusalLimiter::default());
    RefusalSink(Arc::new(move |refusal| {
        let now = clock.now();
        let due = limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note_flushing(refusal, now);
        for r in due {
            let Refusal { actor, method, why } = &r.refusal;
            tracing::warn!(%actor, %method, suppressed = r.suppressed, %why, "admin call refused");
        }
    }))
}

/// How often one caller's refusals of one method are recorded.
pub const REFUSAL_WINDOW: Duration = Duration::minutes(1);

/// How many (caller, method) pairs are remembered; refusals of further callers are counted
/// under [`OTHERS`], so the memory stays bounded whatever the callers.
pub const MAX_REFUSAL_KEYS: usize = 1024;

/// How many refusals are recorded per [`REFUSAL_WINDOW`] in total, whatever the callers: the
/// last one is kept for the [`OTHERS`] record.
pub const MAX_REFUSAL_RECORDS: usize = 60;

/// The actor of the record counting refusals not recorded under their own caller (too many
/// callers, or over [`MAX_REFUSAL_RECORDS`]).
pub const OTHERS: &str = "others";

/// A refusal to record now, with the repeats suppressed since the previous record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToRecord {
    pub refusal: Refusal,
    /// Refusals of this caller and method not recorded since its last record; for
    /// [`OTHERS`], the refusals counted there besides the one shown (of any method).
    pub suppressed: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    recorded_at: DateTime<Utc>,
    suppressed: u64,
    /// The latest refusal, for a record of repeats that [`RefusalLimiter::flush`] writes.
    last: Refusal,
}

/// The refusals counted under [`OTHERS`] since its last record.
#[derive(Debug, Clone, Default)]
struct Others {
    recorded_at: Option<DateTime<Utc>>,
    count: u64,
    last: Option<Refusal>,
}

/// How many records the current window has left.
#[derive(Debug, Clone)]
struct Budget {
    started: Option<DateTime<Utc>>,
    used: usize,
}

/// Decides which refusals are recorded: the first of a caller and method, then at most one
/// per [`REFUSAL_WINDOW`], carrying the count of those in between; [`flush`](Self::flush)
/// reports the repeats of callers that went quiet. At most `max_records` records per window
/// in all: one is kept for [`OTHERS`], which counts the refusals of callers beyond
/// `max_keys` and those over the budget. Pure: `now` is passed in.
#[derive(Debug)]
pub struct RefusalLimiter {
    window: Duration,
    max_keys: usize,
    max_records: usize,
    slots: HashMap<(String, String), Slot>,
    others: Others,
    budget: Budget,
    flushed_at: Option<DateTime<Utc>>,
}

impl Default for RefusalLimiter {
    fn default() -> Self {
        Self::new(REFUSAL_WINDOW, MAX_REFUSAL_KEYS, MAX_REFUSAL_RECORDS)
    }
}

impl ToRecord {
    /// What the audit record or log line says about it.
    pub fn detail(&self) -> String {
        let why = &self.refusal.why;
        match (self.refusal.actor.as_str(), self.suppressed) {
            (_, 0) => why.clone(),
            (OTHERS, n) => format!(
                "{why} ({n} more refused calls of callers not recorded one by one since the last record)"
            ),
            (_, n) => format!("{why} ({n} more refused since the last record)"),
        }
    }
}

impl RefusalLimiter {
    /// A limiter recording one refusal per caller and method per `window`, remembering at
    /// most `max_keys` callers and methods, and recording at most `max_records` refusals per
    /// `window` in all (at least two: one is kept for [`OTHERS`]).
    pub fn new(window: Duration, max_keys: usize, max_records: usize) -> Self {
        Self {
            window,
            max_keys: max_keys.max(1),
            max_records: max_records.max(2),
            slots: HashMap::new(),
            others: Others::default(),
            budget: Budget {
                started: None,
                used: 0,
            },
            flushed_at: None,
        }
    }

    /// What to record for `refusal` at `now`, if anything.
    pub fn note(&mut self, refusal: Refusal, now: DateTime<Utc>) -> Option<ToRecord> {
        self.roll(now);
        let key = (refusal.actor.clone(), refusal.method.clone());
        if !self.slots.contains_key(&key) && self.slots.len() >= self.max_keys {
            self.forget_quiet(now);
            if self.slots.len() >= self.max_keys {
                return self.count_as_others(refusal, 1, now);
            }
        }
        if let Some(slot) = self.slots.get_mut(&key)
            && now < slot.recorded_at + self.window
        {
            slot.suppressed += 1;
            slot.last = refusal;
            return None;
        }
        if !self.spend_on_a_caller() {
            return self.count_as_others(refusal, 1, now);
        }
        let slot = self.slots.entry(key).or_insert_with(|| Slot {
            recorded_at: now,
            suppressed: 0,
            last: refusal.clone(),
        });
        let suppressed = std::mem::take(&mut slot.suppressed);
        slot.recorded_at = now;
        slot.last = refusal.clone();
        Some(ToRecord {
            refusal,
            suppressed,
        })
    }

    /// [`flush`](Self::flush) if a window passed since the last flush, then
    /// [`note`](Self::note): for a sink with no timer of its own.
    pub fn note_flushing(&mut self, refusal: Refusal, now: DateTime<Utc>) -> Vec<ToRecord> {
        let mut out = match self.flushed_at {
            Some(at) if now >= at + self.window => self.flush(now),
            Some(_) => Vec::new(),
            None => {
                self.flushed_at = Some(now);
                Vec::new()
            }
        };
        out.extend(self.note(refusal, now));
        out
    }

    /// The repeats not yet recorded of callers whose window has passed (to call about once
    /// per window), within the budget: those over it are counted under [`OTHERS`], whose
    /// record comes last. Forgets callers with nothing left to report.
    pub fn flush(&mut self, now: DateTime<Utc>) -> Vec<ToRecord> {
        self.roll(now);
        self.flushed_at = Some(now);
        let window = self.window;
        let mut due: Vec<_> = self
            .slots
            .iter()
            .filter(|(_, s)| s.suppressed > 0 && now >= s.recorded_at + window)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        let mut out = Vec::new();
        for key in due {
            let spend = self.spend_on_a_caller();
            let Some(slot) = self.slots.get_mut(&key) else {
                continue;
            };
            let suppressed = std::mem::take(&mut slot.suppressed);
            let last = slot.last.clone();
            if spend {
                slot.recorded_at = now;
                out.push(ToRecord {
                    refusal: last,
                    suppressed,
                });
            } else {
                self.others.count += suppressed;
                self.others.last = Some(last);
            }
        }
        self.forget_quiet(now);
        out.extend(self.take_others(now, false));
        out
    }

    /// Counts `n` refusals, the latest `refusal`, under [`OTHERS`], and records them if its
    /// window has passed and the budget allows.
    fn count_as_others(
        &mut self,
        refusal: Refusal,
        n: u64,
        now: DateTime<Utc>,
    ) -> Option<ToRecord> {
        self.others.count += n;
        self.others.last = Some(refusal);
        self.take_others(now, true)
    }

    /// The [`OTHERS`] record, if one is due; `shown_is_new` when the refusal it shows is
    /// recorded by it (not one of the counted repeats).
    fn take_others(&mut self, now: DateTime<Utc>, shown_is_new: bool) -> Option<ToRecord> {
        let due = self
            .others
            .recorded_at
            .is_none_or(|at| now >= at + self.window);
        if !due || self.others.count == 0 || self.budget.used >= self.max_records {
            return None;
        }
        let last = self.others.last.clone()?;
        self.budget.used += 1;
        self.others.recorded_at = Some(now);
        let count = std::mem::take(&mut self.others.count);
        Some(ToRecord {
            refusal: Refusal {
                actor: OTHERS.to_string(),
                ..last
            },
            suppressed: if shown_is_new { count - 1 } else { count },
        })
    }

    /// Takes one record of a caller's own from the window's budget, if one is left (the last
    /// is kept for [`OTHERS`]).
    fn spend_on_a_caller(&mut self) -> bool {
        let free = self.budget.used + 1 < self.max_records;
        if free {
            self.budget.used += 1;
        }
        free
    }

    /// Starts a new budget window once the current one has passed.
    fn roll(&mut self, now: DateTime<Utc>) {
        if self.budget.started.is_none_or(|at| now >= at + self.window) {
            self.budget = Budget {
                started: Some(now),
                used: 0,
            };
        }
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

    /// How many refusals a record stands for: a record by `note` shows a new refusal besides
    /// its repeats, one by `flush` only repeats.
    fn counted(records: &[ToRecord], by_note: bool) -> u64 {
        records
            .iter()
            .map(|x| x.suppressed + u64::from(by_note))
            .sum()
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
    fn many_callers_are_counted_under_others_so_memory_stays_bounded() {
        let mut l = RefusalLimiter::new(REFUSAL_WINDOW, 8, 1000);
        let recorded = (0..10_000)
            .filter_map(|i| l.note(r(&format!("uid:{i}"), "Watch"), t(0)))
            .collect::<Vec<_>>();
        // 8 callers of their own, then one record for all the others.
        assert_eq!(recorded.len(), 9);
        assert_eq!(recorded[8].refusal.actor, OTHERS);
        assert!(l.len() <= 8);
        // A window later the shared record reports every repeat.
        let flushed = l.flush(t(60));
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].refusal.actor, OTHERS);
        assert_eq!(flushed[0].suppressed, 10_000 - 9);
        assert_eq!(counted(&recorded, true) + counted(&flushed, false), 10_000);
    }

    #[test]
    fn all_callers_together_get_at_most_the_budget_and_every_refusal_is_counted() {
        let mut l = RefusalLimiter::default();
        let (mut sent, mut counted_all) = (0u64, 0u64);
        // Three hours of 1,000 new callers a minute (as many source addresses would be),
        // flushed once a minute.
        for minute in 0..180 {
            let start = minute * 60;
            let noted: Vec<_> = (0..1000)
                .filter_map(|i| {
                    sent += 1;
                    l.note(r(&format!("uid:{minute}-{i}"), "Watch"), t(start + i % 60))
                })
                .collect();
            let flushed = l.flush(t(start + 59));
            let records = noted.len() + flushed.len();
            assert!(records <= MAX_REFUSAL_RECORDS, "minute {minute}: {records}");
            assert!(l.len() <= MAX_REFUSAL_KEYS);
            counted_all += counted(&noted, true) + counted(&flushed, false);
        }
        // Later flushes report what is left, within the budget too.
        for minute in 180..200 {
            let flushed = l.flush(t(minute * 60 + 59));
            assert!(flushed.len() <= MAX_REFUSAL_RECORDS);
            counted_all += counted(&flushed, false);
        }
        assert_eq!(counted_all, sent);
    }

    #[test]
    fn quiet_callers_repeats_are_flushed_then_they_are_forgotten() {
        let mut l = RefusalLimiter::new(REFUSAL_WINDOW, 2, 100);
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

    #[test]
    fn a_sink_without_a_timer_flushes_once_a_window_so_new_callers_keep_their_name() {
        let mut flushing = RefusalLimiter::new(REFUSAL_WINDOW, 4, 100);
        let mut noting = RefusalLimiter::new(REFUSAL_WINDOW, 4, 100);
        for i in 0..4 {
            for _ in 0..2 {
                flushing.note_flushing(r(&format!("uid:{i}"), "Watch"), t(0));
                noting.note(r(&format!("uid:{i}"), "Watch"), t(0));
            }
        }
        // A window later the four repeats are reported (their callers stay a window more).
        let later = flushing.note_flushing(r("uid:8", "Watch"), t(61));
        let actors: Vec<_> = later.iter().map(|x| x.refusal.actor.as_str()).collect();
        assert_eq!(actors, ["uid:0", "uid:1", "uid:2", "uid:3", OTHERS]);
        assert!(later[..4].iter().all(|x| x.suppressed == 1));
        assert_eq!(flushing.note_flushing(r("uid:8", "Watch"), t(62)), []);
        // Then they are forgotten and a new caller is named; never flushed, they would stay.
        let named = |x: Vec<ToRecord>| x.iter().any(|x| x.refusal.actor == "uid:9");
        assert!(named(flushing.note_flushing(r("uid:9", "Watch"), t(122))));
        assert!(!named(
            noting
                .note(r("uid:9", "Watch"), t(122))
                .into_iter()
                .collect()
        ));
    }

    #[test]
    fn the_others_record_says_what_it_counts() {
        let mut x = ToRecord {
            refusal: r(OTHERS, "Watch"),
            suppressed: 5,
        };
        assert!(
            x.detail().contains("5 more refused calls of callers"),
            "{}",
            x.detail()
        );
        x.refusal.actor = "uid:3".into();
        assert_eq!(x.detail(), "no (5 more refused since the last record)");
        x.suppressed = 0;
        assert_eq!(x.detail(), "no");
    }
}
