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

/// How many words a window sentence spends, most first: the view uses the most that fit.
/// Words are dropped in this order: the date, `(console)` and `its`, then the SVID count and
/// the seconds of the loss moments, then the loss moments themselves. The moments that are the
/// point of a sentence (when X.509 stops, when workloads fail or since when they have been
/// failing, with their seconds and their `in …`) are in every form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Words {
    /// Full times (`2026-11-24 06:12:03Z`), `since …` with the age.
    Full,
    /// Times of day (`06:12:03Z`).
    Short,
    /// Without `(console)`; `1 past renewal`, `fails …`.
    Terse,
    /// Loss moments to the minute (`06:12Z`), no SVID count.
    Tiny,
    /// No loss moments and no `server` (the segment's title says how long it has been
    /// unreachable).
    Bare,
}

impl Words {
    /// Every form, most words first.
    pub const ALL: [Words; 5] = [
        Words::Full,
        Words::Short,
        Words::Terse,
        Words::Tiny,
        Words::Bare,
    ];

    /// A moment that is the point of a sentence: always with its seconds.
    fn key(self, t: i64, now: DateTime<Utc>) -> String {
        match self {
            Words::Full => fmt_time(t),
            _ => clock_time(t, now, true),
        }
    }

    /// When a loss happened (None: this form leaves it out).
    fn since(self, t: i64, now: DateTime<Utc>) -> Option<String> {
        match self {
            Words::Full => Some(fmt_time(t)),
            Words::Short | Words::Terse => Some(clock_time(t, now, true)),
            Words::Tiny => Some(clock_time(t, now, false)),
            Words::Bare => None,
        }
    }
}

/// The most words of `make` that fit in `room` columns (the tersest when none does), full
/// dates only when `full`.
pub fn fitted(room: usize, full: bool, make: impl Fn(Words) -> TextLine) -> TextLine {
    let mut last = TextLine::default();
    for words in Words::ALL.into_iter().skip(usize::from(!full)) {
        last = make(words);
        if last.width() <= room {
            break;
        }
    }
    last
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
        let root = if words >= Words::Tiny {
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
                _ => String::new(),
            };
        }
        let d = fmt_secs(now.timestamp() - u.since);
        match words {
            Words::Full => format!(" since {} ({d})", fmt_time(u.since)),
            Words::Short | Words::Terse => format!(" for {d}"),
            Words::Tiny | Words::Bare => format!(" {d}"),
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

/// `{what} 07:37:03Z (in 25m 00s)`, a warning below `warn` seconds.
fn countdown(
    what: &str,
    t: i64,
    (now, words): (DateTime<Utc>, Words),
    warn: i64,
) -> (Cow<'static, str>, Role) {
    let left = t - now.timestamp();
    piece(
        format!("{what} {} (in {})", words.key(t, now), fmt_secs(left)),
        Role::Countdown(deadline_level(left, warn)),
    )
}

/// X.509 continues until `t` (or stopped at `t`).
fn x509_until(t: Deadline, now: DateTime<Utc>, words: Words) -> (Cow<'static, str>, Role) {
    match t {
        Deadline::At(t) => {
            let verb = if words == Words::Full {
                "continues "
            } else {
                ""
            };
            let what = format!("X.509 {verb}until");
            countdown(&what, t, (now, words), X509_WARN_SECS)
        }
        Deadline::Passed(t) => piece(
            format!("X.509 stopped at {}", words.key(t, now)),
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
    let jwt = if words >= Words::Tiny {
        ", JWT stops"
    } else {
        ", JWT stops now"
    };
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
            spans.push(piece(jwt, Role::Plain));
        }
        UpstreamOutage::Unknown { x509_until: x } => {
            spans.push(piece(if_lost.clone(), Role::Dim));
            match x {
                Some(t) => {
                    spans.push(x509_until(Deadline::At(t), now, words));
                    // The segment's title says whose records these are.
                    if words < Words::Tiny {
                        spans.push(piece(" (upstream's record)", Role::Dim));
                    }
                }
                None => spans.push(piece(
                    "X.509 until unknown (no record of its intermediate)",
                    Role::Level(Level::Warning),
                )),
            }
            spans.push(piece(jwt, Role::Plain));
        }
        UpstreamOutage::Lost { since, as_of, x509 } => {
            let since = words
                .since(since, now)
                .map_or(String::new(), |s| format!(" since {s}"));
            spans.push(piece(
                format!("upstream lost{since} {} ", g.arrow),
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
            // The segment's title says it is last known, and since when.
            let marker = match (as_of, words) {
                (Some(t), Words::Full | Words::Short) => {
                    Some(format!(" (last known, as of {})", short_time(t, now)))
                }
                (Some(_), Words::Terse | Words::Tiny) => Some(" (last known)".to_string()),
                _ => None,
            };
            if let Some(m) = marker {
                spans.push(piece(m, Role::Stale));
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
    let server = if words == Words::Bare { "" } else { "server " };
    let console = if words >= Words::Terse {
        ""
    } else {
        " (console)"
    };
    let by_console = match reach {
        Reach::Lost { since, .. } => Some(match words.since(*since, now) {
            Some(t) => format!("{server}unreachable since {t}{console}"),
            None => format!("{server}unreachable"),
        }),
        Reach::NeverReached { .. } => Some(format!("{server}never reached{console}")),
        Reach::Live | Reach::Connecting => None,
    };
    let agents = match (agents_at, words) {
        (Some(t), Words::Full) => Some(format!("its agents lost it at {}", fmt_time(t))),
        (Some(t), _) => Some(match words.since(t, now) {
            Some(t) => format!("agents lost it at {t}"),
            None => "agents lost it".to_string(),
        }),
        (None, _) if w.agents.total > 0 && words == Words::Full => {
            Some("its agents still reach it".to_string())
        }
        (None, _) if w.agents.total > 0 => Some("agents still reach it".to_string()),
        (None, _) => None,
    };
    match (by_console, agents) {
        (Some(c), Some(a)) => format!("{c} / {a}"),
        (Some(c), None) => c,
        (None, Some(a)) if words == Words::Bare => a,
        (None, Some(a)) => format!("server reachable{console} / {a}"),
        (None, None) => "server lost".to_string(),
    }
}

/// The failure moment of a lost server's workloads: `; first failure at … (in …)`, `; failing
/// since …`.
fn failure_piece(
    failure: Option<Deadline>,
    now: DateTime<Utc>,
    words: Words,
) -> (Cow<'static, str>, Role) {
    match failure {
        Some(Deadline::At(t)) => {
            let first = if words <= Words::Short {
                "; first failure at"
            } else {
                "; fails"
            };
            countdown(first, t, (now, words), WORKLOADS_WARN_SECS)
        }
        Some(Deadline::Passed(t)) => piece(
            format!("; failing since {}", words.key(t, now)),
            Role::Strong(Level::Critical),
        ),
        None => piece("; no workload SVIDs known", Role::Plain),
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
                Some(at) => countdown("workloads fail at", at, (now, words), WORKLOADS_WARN_SECS),
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
            let count = match words {
                // No workload SVID known: nothing to count.
                _ if failure.is_none() => None,
                Words::Full | Words::Short => {
                    let plural = if past_renewal == 1 { "" } else { "s" };
                    Some(format!("; {past_renewal} SVID{plural} past renewal"))
                }
                Words::Terse => Some(format!("; {past_renewal} past renewal")),
                Words::Tiny | Words::Bare => None,
            };
            if let Some(c) = count {
                let role = if past_renewal > 0 {
                    Role::Level(Level::Warning)
                } else {
                    Role::Plain
                };
                spans.push(piece(c, role));
            }
            spans.push(failure_piece(failure, now, words));
        }
    }
    TextLine { spans }
}

/// A lost server's facts on two lines, when a view has them: who lost it, then what follows
/// (`3 SVIDs past renewal; first failure at … (in …)`), in the most words for which both lines
/// fit in `room`. None while the server is not lost, or when not even the tersest form fits.
pub fn server_facts(
    w: &SegmentWindow,
    now: DateTime<Utc>,
    (room, full): (usize, bool),
    g: &Glyphs,
) -> Option<[TextLine; 2]> {
    if !matches!(w.server_outage(now), ServerOutage::Lost { .. }) {
        return None;
    }
    Words::ALL
        .into_iter()
        .skip(usize::from(!full))
        .find_map(|words| {
            let mut who = server_sentence(w, now, words, g);
            let mut rest = TextLine {
                spans: who.spans.split_off(1),
            };
            if let Some((first, _)) = rest.spans.first_mut() {
                *first = Cow::Owned(first.trim_start_matches("; ").to_string());
            }
            (who.width() <= room && rest.width() <= room).then_some([who, rest])
        })
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

/// The strip's "if server lost" cell in `room` columns: `SVIDs fail in 4m 10s`, or the facts
/// in short, as many as fit but always the failure's time of day: `1 late, fails 07:37:03Z (in
/// 25m 00s)`, `fails 07:37:03Z`, `failing since 07:11:55Z`.
pub fn strip_server(w: &SegmentWindow, now: DateTime<Utc>, room: usize) -> (String, Role) {
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
            let late = format!("{past_renewal} late, ");
            let mut forms = match failure {
                Some(Deadline::At(t)) => {
                    let at = clock_time(t, now, true);
                    let left = fmt_secs(t - now.timestamp());
                    vec![
                        format!("{late}fails {at} (in {left})"),
                        format!("fails {at} (in {left})"),
                        format!("fails {at}"),
                    ]
                }
                Some(Deadline::Passed(t)) => {
                    let at = clock_time(t, now, true);
                    vec![
                        format!("{late}failing since {at}"),
                        format!("failing since {at}"),
                        format!("failing {at}"),
                    ]
                }
                None => vec![
                    format!("{late}no SVIDs known"),
                    "no SVIDs known".to_string(),
                ],
            };
            let fits = forms.iter().position(|f| super::width(f) <= room);
            let text = forms.swap_remove(fits.unwrap_or(forms.len() - 1));
            (text, Role::Strong(Level::Critical))
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

#[cfg(test)]
mod tests {
    use trustdeck_proto::admin::ConnectivityState;
    use trustdeck_topology::DaemonRole;
    use trustdeck_topology::fleet::{AgentLinks, UpstreamLink};

    use super::*;
    use crate::text::glyphs::{ASCII, UNICODE};

    const NOW: i64 = 1_795_504_323; // 2026-11-24 07:12:03Z

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).expect("now")
    }

    /// The longest case: lost by the console and by its agents, SVIDs past renewal, the upstream
    /// lost too (last known).
    fn lost(failure_in: i64) -> SegmentWindow {
        SegmentWindow {
            segment: "dmz-workloads".into(),
            server: "dmz-workloads".into(),
            role: DaemonRole::Downstream.into(),
            reach: Reach::Lost {
                since: NOW - 90,
                error: "keepalive timed out".into(),
            },
            upstream: Some(UpstreamLink {
                state: ConnectivityState::Lost.into(),
                since: NOW - 300,
                error: None,
                as_of: Some(NOW - 90),
            }),
            x509_until: Some(NOW + 2 * 3600),
            jwt_stops_now: true,
            workloads_fail_at: Some(NOW + failure_in),
            workloads: 12,
            past_renewal: 10,
            agents: AgentLinks {
                total: 3,
                lost: 2,
                lost_since: Some(NOW - 60),
            },
            stale_secs: Some(90),
        }
    }

    /// From the narrowest sentence the console draws (the windows pane of a 120-column
    /// terminal) up: the moment that is the point of a sentence is there with its seconds and
    /// its `in …` or `failing since`.
    #[test]
    fn the_failure_time_survives_every_width() {
        for g in [&UNICODE, &ASCII] {
            for room in 69..=200 {
                let full = room + 3 >= 100;
                let w = lost(25 * 60);
                let srv = plain(&fitted(room, full, |words| {
                    server_sentence(&w, now(), words, g)
                }));
                assert!(srv.chars().count() <= room, "{room}: {srv}");
                assert!(srv.contains("07:37:03Z (in 25m 00s)"), "{room}: {srv}");
                let up = plain(&fitted(room, full, |words| {
                    upstream_sentence(&w, now(), words, g)
                }));
                assert!(up.chars().count() <= room, "{room}: {up}");
                assert!(up.contains("09:12:03Z (in 2h 00m)"), "{room}: {up}");
                let w = lost(-8);
                let srv = plain(&fitted(room, full, |words| {
                    server_sentence(&w, now(), words, g)
                }));
                assert!(srv.chars().count() <= room, "{room}: {srv}");
                assert!(
                    srv.contains("failing since ") && srv.contains("07:11:55Z"),
                    "{room}: {srv}"
                );
            }
        }
    }

    /// Words go in order: `(console)` and the SVID count before the seconds of the loss.
    #[test]
    fn less_useful_words_go_first() {
        let w = lost(25 * 60);
        let g = &UNICODE;
        let s = |words| plain(&server_sentence(&w, now(), words, g));
        assert_eq!(
            s(Words::Short),
            "server unreachable since 07:10:33Z (console) / agents lost it at 07:11:03Z; 10 SVIDs past renewal; first failure at 07:37:03Z (in 25m 00s)"
        );
        assert_eq!(
            s(Words::Terse),
            "server unreachable since 07:10:33Z / agents lost it at 07:11:03Z; 10 past renewal; fails 07:37:03Z (in 25m 00s)"
        );
        assert_eq!(
            s(Words::Tiny),
            "server unreachable since 07:10Z / agents lost it at 07:11Z; fails 07:37:03Z (in 25m 00s)"
        );
        assert_eq!(
            s(Words::Bare),
            "unreachable / agents lost it; fails 07:37:03Z (in 25m 00s)"
        );
    }

    #[test]
    fn the_strip_keeps_the_time_of_day() {
        let w = lost(25 * 60);
        assert_eq!(strip_server(&w, now(), 23).0, "fails 07:37:03Z");
        assert_eq!(
            strip_server(&w, now(), 40).0,
            "10 late, fails 07:37:03Z (in 25m 00s)"
        );
        let w = lost(-8);
        assert_eq!(strip_server(&w, now(), 23).0, "failing since 07:11:55Z");
    }
}
