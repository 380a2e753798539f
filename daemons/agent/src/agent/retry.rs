//! What follows a sync round: when the next one runs, what the server link is called, and
//! what is logged. Pure: the time is passed in.
//!
//! A server that cannot be reached (or fails) is retried with the configured backoff
//! (`sync_interval` doubling to `max_backoff`). A server that refuses the agent's join token
//! for good (used, expired, unknown) leaves the agent *stranded*: only a new join token helps,
//! so it retries on a long backoff ([`STRANDED_FIRST`] doubling to [`STRANDED_MAX`]; with
//! `token_path` a new token in the file is picked up at the next attempt), logs the refusal
//! once as an error with the recovery, and then a warning per attempt at most.

use std::time::Duration;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{ConnectivityState, StrandedReason};

/// The first wait once stranded.
pub const STRANDED_FIRST: Duration = Duration::from_secs(1);
/// The longest wait while stranded.
pub const STRANDED_MAX: Duration = Duration::from_secs(300);
/// The longest wait between rounds while the server answers that its datastore is down: it
/// may come back any moment, and the agent should recover right after the database does.
pub const DATASTORE_DOWN_RETRY: Duration = Duration::from_secs(1);

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Ok,
    /// The server answered but refused part of the work for the caller's rate limit: the
    /// rest is retried after the sync interval, which the limit's refill allows.
    RateLimited,
    /// Failed in a way a later attempt may not (server unreachable, rate limited, evicted).
    Failed,
    /// The server answered that its datastore is down: retried within
    /// [`DATASTORE_DOWN_RETRY`].
    DatastoreDown,
    /// The server refused the join token for a reason retrying cannot fix.
    Stranded(StrandedReason),
}

/// What to log about a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Nothing,
    /// The server's rate limit held part of the round back: the rest follows next round.
    RateLimited,
    /// Back after being stranded.
    Recovered,
    /// A failure to retry on the normal backoff.
    Retrying,
    /// Newly stranded: the one error, with the recovery.
    Stranded,
    /// Still stranded.
    StillStranded,
}

/// The decision after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// How long to wait before the next round (a renewal falling due may shorten a wait of
    /// `sync_interval`).
    pub wait: Duration,
    /// When that is.
    pub next_at: DateTime<Utc>,
    pub state: ConnectivityState,
    pub log: Log,
}

/// The backoff and the stranded state across rounds.
#[derive(Debug, Clone)]
pub struct Retry {
    base: Duration,
    max: Duration,
    wait: Duration,
    stranded: Option<StrandedReason>,
}

impl Retry {
    /// `base` is the sync interval, `max` the configured `max_backoff`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            wait: base,
            stranded: None,
        }
    }

    /// Why the agent is stranded, if it is.
    pub fn stranded(&self) -> Option<StrandedReason> {
        self.stranded
    }

    /// Whether the next wait is the plain sync interval (no failure pending).
    pub fn at_base(&self) -> bool {
        self.wait == self.base && self.stranded.is_none()
    }

    /// Takes the outcome of the round that ended at `now`.
    pub fn after(&mut self, round: Round, now: DateTime<Utc>) -> Decision {
        let (state, log) = match round {
            Round::Ok | Round::RateLimited => {
                self.wait = self.base;
                let log = match (self.stranded.take(), round) {
                    (Some(_), _) => Log::Recovered,
                    (None, Round::RateLimited) => Log::RateLimited,
                    (None, _) => Log::Nothing,
                };
                (ConnectivityState::Connected, log)
            }
            // Still stranded while the server is also unreachable: only a new token helps.
            Round::Failed | Round::DatastoreDown if self.stranded.is_some() => {
                self.wait = self.stranded_step();
                (ConnectivityState::Stranded, Log::StillStranded)
            }
            Round::Failed | Round::DatastoreDown => {
                let state = if self.wait >= self.max {
                    ConnectivityState::Lost
                } else {
                    ConnectivityState::Degraded
                };
                let cap = if round == Round::DatastoreDown {
                    std::cmp::min(self.max, DATASTORE_DOWN_RETRY.max(self.base))
                } else {
                    self.max
                };
                self.wait = std::cmp::min(self.wait * 2, cap);
                (state, Log::Retrying)
            }
            Round::Stranded(reason) => {
                let log = if self.stranded == Some(reason) {
                    self.wait = self.stranded_step();
                    Log::StillStranded
                } else {
                    self.wait = STRANDED_FIRST.max(self.base);
                    Log::Stranded
                };
                self.stranded = Some(reason);
                (ConnectivityState::Stranded, log)
            }
        };
        let next_at = chrono::Duration::from_std(self.wait)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(now);
        Decision {
            wait: self.wait,
            next_at,
            state,
            log,
        }
    }

    fn stranded_step(&self) -> Duration {
        std::cmp::min(self.wait * 2, STRANDED_MAX.max(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USED: Round = Round::Stranded(StrandedReason::TokenUsed);

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn retry() -> Retry {
        Retry::new(Duration::from_millis(500), Duration::from_secs(2))
    }

    /// Runs `rounds`, each starting when the previous decision said; returns the decisions.
    fn run(r: &mut Retry, rounds: &[Round]) -> Vec<Decision> {
        let mut now = t0();
        rounds
            .iter()
            .map(|round| {
                let d = r.after(*round, now);
                assert_eq!(d.next_at - now, chrono::Duration::from_std(d.wait).unwrap());
                now = d.next_at;
                d
            })
            .collect()
    }

    #[test]
    fn an_unreachable_server_is_retried_on_the_configured_backoff() {
        let mut r = retry();
        let d = run(&mut r, &[Round::Failed; 4]);
        let waits: Vec<u64> = d.iter().map(|d| d.wait.as_millis() as u64).collect();
        assert_eq!(waits, [1000, 2000, 2000, 2000]);
        let states: Vec<_> = d.iter().map(|d| d.state).collect();
        assert_eq!(
            states,
            [
                ConnectivityState::Degraded,
                ConnectivityState::Degraded,
                ConnectivityState::Lost,
                ConnectivityState::Lost
            ]
        );
        assert!(d.iter().all(|d| d.log == Log::Retrying));
        assert_eq!(r.stranded(), None);
        let ok = r.after(Round::Ok, t0());
        assert_eq!(
            (ok.wait, ok.state, ok.log),
            (
                Duration::from_millis(500),
                ConnectivityState::Connected,
                Log::Nothing
            )
        );
        assert!(r.at_base());
    }

    #[test]
    fn a_rate_limited_round_is_retried_at_the_sync_interval_without_backoff() {
        let mut r = retry();
        let d = run(
            &mut r,
            &[Round::Failed, Round::RateLimited, Round::RateLimited],
        );
        assert_eq!(d[0].wait, Duration::from_secs(1));
        for d in &d[1..] {
            assert_eq!(d.wait, Duration::from_millis(500));
            assert_eq!(
                (d.state, d.log),
                (ConnectivityState::Connected, Log::RateLimited)
            );
        }
        assert!(r.at_base());
    }

    #[test]
    fn a_spent_token_backs_off_to_five_minutes_and_logs_the_error_once() {
        let mut r = retry();
        // The outage: the server is unreachable, then refuses the used token for good.
        let mut rounds = vec![Round::Failed; 3];
        rounds.extend([USED; 12]);
        let d = run(&mut r, &rounds);
        let stranded = &d[3..];
        let waits: Vec<u64> = stranded.iter().map(|d| d.wait.as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert!(
            stranded
                .iter()
                .all(|d| d.state == ConnectivityState::Stranded)
        );
        assert_eq!(stranded[0].log, Log::Stranded);
        assert!(stranded[1..].iter().all(|d| d.log == Log::StillStranded));
        assert_eq!(r.stranded(), Some(StrandedReason::TokenUsed));
        assert!(!r.at_base());
        // Twelve attempts span 23 minutes, where the configured backoff (2 s) made 700.
        let span = stranded.last().unwrap().next_at - d[2].next_at;
        assert_eq!(span, chrono::Duration::seconds(511 + 3 * 300));
    }

    #[test]
    fn stranded_stays_stranded_while_the_server_is_away_again() {
        let mut r = retry();
        let d = run(&mut r, &[USED, USED, Round::Failed, Round::Failed, USED]);
        let waits: Vec<u64> = d.iter().map(|d| d.wait.as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        assert!(d.iter().all(|d| d.state == ConnectivityState::Stranded));
        assert_eq!(d[2].log, Log::StillStranded);
    }

    #[test]
    fn a_new_token_recovers_and_a_new_reason_is_logged_again() {
        let mut r = retry();
        run(&mut r, &[USED, USED]);
        let d = r.after(Round::Stranded(StrandedReason::TokenUnknown), t0());
        assert_eq!((d.log, d.wait), (Log::Stranded, STRANDED_FIRST));
        let d = r.after(Round::Ok, t0());
        assert_eq!(d.log, Log::Recovered);
        assert_eq!(d.state, ConnectivityState::Connected);
        assert_eq!(r.stranded(), None);
        assert!(r.at_base());
        assert_eq!(r.after(USED, t0()).log, Log::Stranded);
    }

    #[test]
    fn a_slow_sync_interval_is_never_shortened_by_being_stranded() {
        let mut r = Retry::new(Duration::from_secs(10), Duration::from_secs(600));
        let d = run(&mut r, &[USED; 8]);
        let waits: Vec<u64> = d.iter().map(|d| d.wait.as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 600, 600]);
    }

    #[test]
    fn a_server_whose_datastore_is_down_is_asked_again_within_a_second() {
        let (base, max) = (Duration::from_millis(500), Duration::from_secs(30));
        let mut r = Retry::new(base, max);
        for _ in 0..6 {
            r.after(Round::Failed, t0());
        }
        assert_eq!(r.after(Round::Failed, t0()).wait, max);
        assert_eq!(
            r.after(Round::DatastoreDown, t0()).wait,
            DATASTORE_DOWN_RETRY
        );
        let mut fresh = Retry::new(base, max);
        assert_eq!(
            fresh.after(Round::DatastoreDown, t0()).wait,
            Duration::from_secs(1)
        );
        let mut short = Retry::new(base, Duration::from_millis(700));
        assert_eq!(
            short.after(Round::DatastoreDown, t0()).wait,
            Duration::from_millis(700)
        );
    }

    #[test]
    fn a_stranded_agent_stays_stranded_while_the_servers_datastore_is_down() {
        let mut r = Retry::new(Duration::from_secs(1), Duration::from_secs(30));
        r.after(USED, t0());
        let d = r.after(Round::DatastoreDown, t0());
        assert_eq!(d.state, ConnectivityState::Stranded);
        assert_eq!(d.log, Log::StillStranded);
        assert!(d.wait >= Duration::from_secs(2), "{:?}", d.wait);
        assert_eq!(r.stranded(), Some(StrandedReason::TokenUsed));
    }
}
