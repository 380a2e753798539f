//! What keeps connections that have not shown an identity from exhausting a daemon: timeouts,
//! caps, a backoff on accept errors, and warnings logged once per burst.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// Bounds on connections before and without a client identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// A connection without a client certificate is closed after this long without a byte
    /// read or written; one with a certificate if it sends nothing this long after the
    /// handshake (no HTTP/2 preface).
    pub idle_timeout: Duration,
    /// Connections in their TLS handshake at once; more are closed when accepted.
    pub max_handshaking: usize,
    /// Established connections without a client certificate at once; more are closed.
    pub max_unidentified: usize,
}

/// The default timeouts, for handshakes and idle connections alike.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl ConnectionLimits {
    /// Defaults for a process that may open `nofile` descriptors: each cap is a quarter of
    /// them (8 to 1024), so half stay for identified peers, the admin socket and files.
    pub fn for_fd_limit(nofile: u64) -> Self {
        let cap = usize::try_from((nofile / 4).clamp(8, 1024)).unwrap_or(1024);
        Self {
            handshake_timeout: DEFAULT_TIMEOUT,
            idle_timeout: DEFAULT_TIMEOUT,
            max_handshaking: cap,
            max_unidentified: cap,
        }
    }

    /// Defaults for this process's open-file limit.
    pub fn for_this_process() -> Self {
        Self::for_fd_limit(open_file_limit())
    }
}

/// This process's soft `RLIMIT_NOFILE` (1024 when unknown or unlimited).
pub fn open_file_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024)
}

/// Connections to a local socket the processes of one uid may hold open at once, for a
/// process that may open `nofile` descriptors: an eighth of them (8 to 1024), per socket. A
/// Workload API connection holds two (the socket and its pinned `/proc/<pid>`), so one uid
/// takes at most a quarter through the Workload API, and an eighth more through an admin
/// socket it may open.
pub fn max_connections_per_uid(nofile: u64) -> usize {
    usize::try_from((nofile / 8).clamp(8, 1024)).unwrap_or(1024)
}

/// Counts what each holder (a uid, a source address) holds open against a maximum.
#[derive(Clone)]
pub struct PlaceCounter<K: Hash + Eq + Copy> {
    max: usize,
    open: Arc<Mutex<HashMap<K, usize>>>,
}

/// One place held; dropping it (with what it stands for) frees the place.
pub struct Place<K: Hash + Eq + Copy> {
    key: K,
    open: Arc<Mutex<HashMap<K, usize>>>,
}

/// Places per uid (connections to a local socket, streams).
pub type UidCounter = PlaceCounter<u32>;
/// A place held by a uid.
pub type UidPermit = Place<u32>;

impl UidCounter {
    /// A connection counter for this process's open-file limit
    /// ([`max_connections_per_uid`]).
    pub fn for_this_process() -> Self {
        Self::new(max_connections_per_uid(open_file_limit()))
    }
}

impl<K: Hash + Eq + Copy> PlaceCounter<K> {
    /// A counter allowing `max` places per holder.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// The most places one holder may have.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for `key`, unless it holds `max` already.
    pub fn acquire(&self, key: K) -> Option<Place<K>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Place {
            key,
            open: self.open.clone(),
        })
    }
}

impl<K: Hash + Eq + Copy> Drop for Place<K> {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A warning that would repeat for every connection, logged at most once per `quiet` with
/// the count since the last one.
#[derive(Debug)]
pub struct BurstLog {
    what: &'static str,
    quiet: Duration,
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl BurstLog {
    /// A warning saying `what`.
    pub const fn new(what: &'static str) -> Self {
        Self {
            what,
            quiet: Duration::from_secs(10),
            count: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// Counts one occurrence and logs if the last warning is older than `quiet`.
    pub fn note(&self, detail: &dyn std::fmt::Display) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= self.quiet) {
            let n = self.count.swap(0, Ordering::Relaxed);
            tracing::warn!(count = n, detail = %detail, "{}", self.what);
            *last = Some(now);
        }
    }
}

/// The delay before the next `accept` after an error (descriptors exhausted): doubles from
/// 10 ms to 1 s, back to the start after a success.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff(Option<Duration>);

impl AcceptBackoff {
    pub(crate) fn failed(&mut self) -> Duration {
        let next = self.0.map_or(Duration::from_millis(10), |d| {
            (d * 2).min(Duration::from_secs(1))
        });
        self.0 = Some(next);
        next
    }

    pub(crate) fn succeeded(&mut self) {
        self.0 = None;
    }
}

/// When an established connection counts as idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleRule {
    /// Any read or write restarts the timer (no client identity).
    Always,
    /// Only until the first byte is read (an identified client's HTTP/2 preface).
    UntilFirstRead,
}

/// The idle timer of one connection.
#[derive(Debug)]
pub(crate) struct IdleTimer {
    rule: IdleRule,
    after: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    pub(crate) fn new(rule: IdleRule, after: Duration) -> Self {
        Self {
            rule,
            after,
            sleep: Some(Box::pin(tokio::time::sleep(after))),
        }
    }

    /// Bytes were read (`read`) or written.
    pub(crate) fn activity(&mut self, read: bool) {
        match self.rule {
            IdleRule::UntilFirstRead if read => self.sleep = None,
            IdleRule::UntilFirstRead => {}
            IdleRule::Always => {
                if let Some(s) = self.sleep.as_mut() {
                    s.as_mut().reset(tokio::time::Instant::now() + self.after);
                }
            }
        }
    }

    /// Whether the connection has been idle too long; registers a wake-up otherwise.
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        match self.sleep.as_mut() {
            Some(s) => s.as_mut().poll(cx) == Poll::Ready(()),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_a_quarter_of_the_descriptors_within_bounds() {
        assert_eq!(ConnectionLimits::for_fd_limit(128).max_unidentified, 32);
        assert_eq!(ConnectionLimits::for_fd_limit(128).max_handshaking, 32);
        assert_eq!(ConnectionLimits::for_fd_limit(16).max_unidentified, 8);
        assert_eq!(
            ConnectionLimits::for_fd_limit(1 << 20).max_unidentified,
            1024
        );
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        assert_eq!(b.failed(), Duration::from_millis(10));
        assert_eq!(b.failed(), Duration::from_millis(20));
        for _ in 0..20 {
            b.failed();
        }
        assert_eq!(b.failed(), Duration::from_secs(1));
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unidentified_connection_expires_only_without_activity() {
        let mut t = IdleTimer::new(IdleRule::Always, Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(6)).await;
        t.activity(false);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!std::future::poll_fn(|cx| Poll::Ready(t.expired(cx))).await);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(std::future::poll_fn(|cx| Poll::Ready(t.expired(cx))).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_identified_connection_expires_only_before_its_first_read() {
        let mut t = IdleTimer::new(IdleRule::UntilFirstRead, Duration::from_secs(10));
        t.activity(false);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(std::future::poll_fn(|cx| Poll::Ready(t.expired(cx))).await);
        let mut t = IdleTimer::new(IdleRule::UntilFirstRead, Duration::from_secs(10));
        t.activity(true);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!std::future::poll_fn(|cx| Poll::Ready(t.expired(cx))).await);
    }
}
