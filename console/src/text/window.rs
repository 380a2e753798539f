//! The words of a segment's autonomous window, as [`TextLine`]s: the upstream link, what the
//! upstream's loss means, and what the server's loss means. A loss that has not happened is a
//! "what if" ("server lost now → workloads fail at …"); one that has is stated as a fact
//! ("server unreachable since … (console) / its agents lost it at …; 3 SVIDs past renewal;
//! first failure at … (in …)"), and a moment that has passed says so ("failing since …").
//! The segments view, the windows pane, the compact strip and `status --output table` all say
//! it with these.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use trustdeck_topology::fleet::{
    Deadline, Level, Reach, SegmentWindow, ServerOutage, UpstreamOutage, conn_level,
};
use trustdeck_topology::ttl::{fmt_secs, fmt_time};

use super::format::{clock_time, deadline_level, short_time};
use super::glyphs::Glyphs;
use super::{Role, TextLine};

/// Warn when a downstream's X.509 issuance stops within this many seconds of losing its
/// upstream.
pub const X509_WARN_SECS: i64 = 3600;
/// Warn when workloads fail within this many seconds of losing their server.
pub const WORKLOADS_WARN_SECS: i64 = 600;

/// How many words a window sentence spends (the view uses the most that fit, so the time of
/// day is never what is cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Words {
    /// Full times (`2026-11-24 06:12:03Z`), `since …` with the age.
    Full,
    /// Times of day (`06:12:03Z`), fewer words.
    Short,
    /// Times of day to the minute (`06:12Z`), the fewest words.
    Tiny,
}

impl Words {
    fn when(self, t: i64, now: DateTime<Utc>) -> String {
        match self {
            Words::Full => fmt_time(t),
            Words::Short => clock_time(t, now, true),
            Words::Tiny => clock_time(t, now, false),
        }
    }
}

fn piece(text: impl Into<Cow<'static, str>>, role: Role) -> (Cow<'static, str>, Role) {
    (text.into(), role)
}

/// `✓ connected since … (3h 00m)`; for a server not live, `last known: connected … (as of
/// 06:12:03Z)`; and the level of the link as shown.
pub fn upstream_state(
    w: &SegmentWindow,
    now: DateTime<Utc>,
    words: Words,
    g: &Glyphs,
) -> (String, Level) {
    if !w.is_downstream() {
        let root = if words == Words::Tiny {
            "(root)"
        } else {
            "none (root of trust)"
        };
        return (format!("{} {root}", g.none), Level::Ok);
    }
    let Some(u) = &w.upstream else {
        return (
            "? unknown: server never reached".to_string(),
            Level::Warning,
        );
    };
    let lvl = conn_level(u.state);
    // A last-known link has no age now: only its start and when it was last known.
    let since = (u.since > 0).then(|| {
        if u.as_of.is_some() {
            return match words {
                Words::Full => format!(" since {}", fmt_time(u.since)),
                Words::Short | Words::Tiny => String::new(),
            };
        }
        let d = fmt_secs(now.timestamp() - u.since);
        match words {
            Words::Full => format!(" since {} ({d})", fmt_time(u.since)),
            Words::Short => format!(" for {d}"),
            Words::Tiny => format!(" {d}"),
        }
    });
    let state = format!("{}{}", u.state, since.unwrap_or_default());
    match u.as_of {
        Some(t) => (
            format!("last known: {state} (as of {})", short_time(t, now)),
            Level::Warning,
        ),
        None => (format!("{} {state}", g.level(lvl)), lvl),
    }
}

/// X.509 continues until `t` (or stopped at `t`).
fn x509_until(t: Deadline, now: DateTime<Utc>, words: Words) -> (Cow<'static, str>, Role) {
    match t {
        Deadline::At(t) => {
            let left = t - now.timestamp();
            let verb = if words == Words::Full {
                "continues "
            } else {
                ""
            };
            piece(
                format!(
                    "X.509 {verb}until {} (in {})",
                    words.when(t, now),
                    fmt_secs(left)
                ),
                Role::Countdown(deadline_level(left, X509_WARN_SECS)),
            )
        }
        Deadline::Passed(t) => piece(
            format!("X.509 stopped at {}", words.when(t, now)),
            Role::Strong(Level::Critical),
        ),
    }
}

/// What the upstream's loss means: `upstream lost now → X.509 continues until …, JWT stops
/// now`, or once it happened `upstream lost since … → X.509 continues until …; JWT stopped`.
pub fn upstream_sentence(
    w: &SegmentWindow,
    now: DateTime<Utc>,
    words: Words,
    g: &Glyphs,
) -> TextLine {
    let if_lost = format!("upstream lost now {} ", g.arrow);
    let no_ca = || {
        piece(
            "X.509 stops now (no intermediate held)",
            Role::Level(Level::Critical),
        )
    };
    let mut spans = Vec::new();
    match w.upstream_outage(now) {
        UpstreamOutage::Root => {
            spans.push(piece(if_lost.clone(), Role::Dim));
            spans.push(piece("n/a: this segment is the root of trust", Role::Plain));
        }
        UpstreamOutage::IfLostNow { x509_until: x } => {
            spans.push(piece(if_lost.clone(), Role::Dim));
            spans.push(match x {
                Some(t) => x509_until(Deadline::At(t), now, words),
                None => no_ca(),
            });
            spans.push(piece(", JWT stops now", Role::Plain));
        }
        UpstreamOutage::Unknown { x509_until: x } => {
            spans.push(piece(if_lost.clone(), Role::Dim));
            match x {
                Some(t) => {
                    spans.push(x509_until(Deadline::At(t), now, words));
                    spans.push(piece(" (upstream's record)", Role::Dim));
                }
                None => spans.push(piece(
                    "X.509 until unknown (no record of its intermediate)",
                    Role::Level(Level::Warning),
                )),
            }
            spans.push(piece(", JWT stops now", Role::Plain));
        }
        UpstreamOutage::Lost { since, as_of, x509 } => {
            spans.push(piece(
                format!(
                    "upstream lost since {} {} ",
                    words.when(since, now),
                    g.arrow
                ),
                Role::Strong(Level::Critical),
            ));
            spans.push(match x509 {
                Some(d) => x509_until(d, now, words),
                None => piece(
                    "X.509 stopped (no intermediate held)",
                    Role::Level(Level::Critical),
                ),
            });
            spans.push(piece("; JWT stopped", Role::Level(Level::Critical)));
            if let Some(t) = as_of {
                spans.push(piece(
                    format!(" (last known, as of {})", short_time(t, now)),
                    Role::Stale,
                ));
            }
        }
    }
    TextLine { spans }
}

/// Who lost the server: `server unreachable since 06:12:03Z (console)`, `server never reached
/// (console)`, and `/ its agents lost it at …` (or `/ its agents still reach it`).
fn who_lost(
    w: &SegmentWindow,
    reach: &Reach,
    agents_at: Option<i64>,
    now: DateTime<Utc>,
    words: Words,
) -> String {
    let console = match reach {
        Reach::Lost { since, .. } => Some(format!(
            "server unreachable since {} (console)",
            words.when(*since, now)
        )),
        Reach::NeverReached { .. } => Some("server never reached (console)".to_string()),
        Reach::Live | Reach::Connecting => None,
    };
    let its = if words == Words::Full { "its " } else { "" };
    let agents = match agents_at {
        Some(t) => Some(format!("{its}agents lost it at {}", words.when(t, now))),
        None if w.agents.total > 0 => Some(format!("{its}agents still reach it")),
        None => None,
    };
    match (console, agents) {
        (Some(c), Some(a)) => format!("{c} / {a}"),
        (Some(c), None) => c,
        (None, Some(a)) => format!("server reachable (console) / {a}"),
        (None, None) => "server lost".to_string(),
    }
}

/// What the server's loss means: `server lost now → workloads fail at … (in …)`, or once it
/// happened the facts.
pub fn server_sentence(
    w: &SegmentWindow,
    now: DateTime<Utc>,
    words: Words,
    g: &Glyphs,
) -> TextLine {
    let mut spans = Vec::new();
    match w.server_outage(now) {
        ServerOutage::IfLostNow { fail_at } => {
            spans.push(piece(format!("server lost now {} ", g.arrow), Role::Dim));
            spans.push(match fail_at {
                Some(at) => {
                    let left = at - now.timestamp();
                    piece(
                        format!(
                            "workloads fail at {} (in {})",
                            words.when(at, now),
                            fmt_secs(left)
                        ),
                        Role::Countdown(deadline_level(left, WORKLOADS_WARN_SECS)),
                    )
                }
                None => piece("no workload SVIDs below it", Role::Plain),
            });
        }
        ServerOutage::Lost {
            reach,
            agents_lost_at,
            past_renewal,
            failure,
        } => {
            spans.push(piece(
                who_lost(w, &reach, agents_lost_at, now, words),
                Role::Strong(Level::Critical),
            ));
            let plural = if past_renewal == 1 { "" } else { "s" };
            spans.push(piece(
                format!("; {past_renewal} SVID{plural} past renewal"),
                if past_renewal > 0 {
                    Role::Level(Level::Warning)
                } else {
                    Role::Plain
                },
            ));
            spans.push(match failure {
                Some(Deadline::At(t)) => {
                    let left = t - now.timestamp();
                    let first = if words == Words::Full {
                        "first failure at"
                    } else {
                        "fails"
                    };
                    piece(
                        format!("; {first} {} (in {})", words.when(t, now), fmt_secs(left)),
                        Role::Countdown(deadline_level(left, WORKLOADS_WARN_SECS)),
                    )
                }
                Some(Deadline::Passed(t)) => piece(
                    format!("; failing since {}", words.when(t, now)),
                    Role::Strong(Level::Critical),
                ),
                None => piece("; no workload SVIDs known", Role::Plain),
            });
        }
    }
    TextLine { spans }
}

/// The strip's "if upstream lost" cell: `X.509 55m 00s, JWT stops`, or the facts in short.
pub fn strip_upstream(w: &SegmentWindow, now: DateTime<Utc>, g: &Glyphs) -> (String, Role) {
    let left = |t: i64| fmt_secs(t - now.timestamp());
    match w.upstream_outage(now) {
        UpstreamOutage::Root => (g.none.to_string(), Role::Plain),
        UpstreamOutage::IfLostNow { x509_until: x } => {
            let x509 = x.map_or("X.509 stops".to_string(), |t| format!("X.509 {}", left(t)));
            (format!("{x509}, JWT stops"), Role::Plain)
        }
        UpstreamOutage::Unknown { x509_until: x } => {
            let x509 = x.map_or("X.509 ?".to_string(), |t| format!("X.509 {}", left(t)));
            (format!("{x509}, JWT stops"), Role::Plain)
        }
        UpstreamOutage::Lost { x509, .. } => {
            // The upstream column beside it says it is lost.
            let x509 = match x509 {
                Some(Deadline::At(t)) => format!("X.509 {}", left(t)),
                Some(Deadline::Passed(_)) | None => "X.509 stopped".to_string(),
            };
            (format!("{x509}, JWT stopped"), Role::Level(Level::Critical))
        }
    }
}

/// The strip's "if server lost" cell: `SVIDs fail in 4m 10s`, or the facts in short.
pub fn strip_server(w: &SegmentWindow, now: DateTime<Utc>) -> (String, Role) {
    match w.server_outage(now) {
        ServerOutage::IfLostNow { fail_at: Some(at) } => {
            let left = at - now.timestamp();
            (
                format!("SVIDs fail in {}", fmt_secs(left)),
                Role::Countdown(deadline_level(left, WORKLOADS_WARN_SECS)),
            )
        }
        ServerOutage::IfLostNow { fail_at: None } => ("no workload SVIDs".to_string(), Role::Dim),
        ServerOutage::Lost {
            past_renewal,
            failure,
            ..
        } => {
            // The upstream column beside it says the server is unreachable.
            let when = match failure {
                Some(Deadline::At(t)) => format!("fails {}", fmt_secs(t - now.timestamp())),
                Some(Deadline::Passed(_)) => "failing".to_string(),
                None => "no SVIDs".to_string(),
            };
            (
                format!("{past_renewal} late, {when}"),
                Role::Strong(Level::Critical),
            )
        }
    }
}

/// The last-known marker of a segment whose server is not live: `UNREACHABLE 20s`, `NEVER
/// REACHED`.
pub fn reach_marker(w: &SegmentWindow, now: DateTime<Utc>) -> Option<String> {
    match &w.reach {
        Reach::Live => None,
        Reach::Connecting => Some("connecting".to_string()),
        Reach::Lost { since, .. } => Some(format!(
            "UNREACHABLE {}",
            fmt_secs((now.timestamp() - since).max(0))
        )),
        Reach::NeverReached { .. } => Some("NEVER REACHED".to_string()),
    }
}

/// A line's text without its roles.
pub fn plain(l: &TextLine) -> String {
    l.spans.iter().map(|(t, _)| t.as_ref()).collect()
}
