//! The autonomous window of every segment: what happens if its upstream, or its server, is
//! lost now. Three forms: the segments view (a block per segment), the windows pane of a large
//! terminal, and the compact strip above the list on a small one.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use trustdeck_topology::DaemonRole;
use trustdeck_topology::fleet::{Level, SegmentWindow, conn_level};
use trustdeck_topology::ttl::{fmt_secs, fmt_time};

use super::columns::{Column, Table};
use super::draw::{Parts, pane_title, select_row, spans};
use super::theme::Theme;
use crate::app::App;
use crate::layout::SEGMENT_LINES;
use crate::text::format::{clock_time, deadline_level, stale_marker};
use crate::text::width;

/// Warn when a downstream's X.509 issuance stops within this many seconds of losing its
/// upstream.
const X509_WARN_SECS: i64 = 3600;
/// Warn when workloads fail within this many seconds of losing their server.
const WORKLOADS_WARN_SECS: i64 = 600;

/// How much an upstream state says.
#[derive(Clone, Copy, PartialEq)]
enum UpFmt {
    /// `✓ connected since 2026-11-24 04:12:03Z (3h 00m)`
    Full,
    /// `✓ connected for 3h 00m`
    Compact,
    /// `✓ connected 3h 00m`
    Tiny,
}

fn upstream_parts(w: &SegmentWindow, now: DateTime<Utc>, f: UpFmt, th: Theme) -> (String, Level) {
    let Some(s) = w.upstream_state else {
        let root = if f == UpFmt::Tiny {
            "(root)"
        } else {
            "none (root of trust)"
        };
        return (format!("{} {root}", th.g.none), Level::Ok);
    };
    let lvl = conn_level(s);
    let since = w.upstream_since.filter(|&t| t > 0).map(|t| {
        let d = fmt_secs(now.timestamp() - t);
        match f {
            UpFmt::Full => format!(" since {} ({d})", fmt_time(t)),
            UpFmt::Compact => format!(" for {d}"),
            UpFmt::Tiny => format!(" {d}"),
        }
    });
    (
        format!("{} {s}{}", th.sym(lvl), since.unwrap_or_default()),
        lvl,
    )
}

/// Whether the segment's upstream link is down (neither connected nor degraded).
fn upstream_lost(w: &SegmentWindow) -> bool {
    w.upstream_state
        .is_some_and(|s| conn_level(s) == Level::Critical)
}

/// From this width a window block says times in full.
const FULL_WIDTH: u16 = 100;

/// How many words a window sentence spends; the longest that fits is used, so the time of
/// day is never the part that is cut.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Words {
    /// `X.509 continues until 2026-11-24 07:14:03Z (in 53m 00s)`
    Full,
    /// `X.509 until 07:14:03Z (in 53m 00s)`
    Short,
    /// `lost → X.509 until 07:14Z (in 53m 00s)`
    Tiny,
}

/// A time as a sentence of `words` says it.
fn when(s: i64, now: DateTime<Utc>, words: Words) -> String {
    match words {
        Words::Full => fmt_time(s),
        Words::Short => clock_time(s, now, true),
        Words::Tiny => clock_time(s, now, false),
    }
}

/// The most words of `make` that fit in `w` columns (the tersest when none does); the full
/// dates only from [`FULL_WIDTH`] columns.
fn sentence(w: u16, make: impl Fn(Words) -> Parts) -> Parts {
    let mut last = Vec::new();
    let first = if w + 3 >= FULL_WIDTH { 0 } else { 1 };
    for words in [Words::Full, Words::Short, Words::Tiny]
        .into_iter()
        .skip(first)
    {
        last = make(words);
        let n: usize = last.iter().map(|(t, _)| width(t)).sum();
        if n <= usize::from(w) {
            break;
        }
    }
    last
}

/// What happens if the segment's upstream is lost now.
fn upstream_sentence(w: &SegmentWindow, now: DateTime<Utc>, th: Theme, words: Words) -> Parts {
    let arrow = th.g.arrow;
    let now_word = if words == Words::Tiny { "" } else { " now" };
    if !w.is_downstream() {
        return vec![
            (
                Cow::Owned(format!("upstream lost{now_word} {arrow} ")),
                th.dim(),
            ),
            (
                Cow::Borrowed("n/a: this segment is the root of trust"),
                Style::new(),
            ),
        ];
    }
    let lost = upstream_lost(w);
    let mut up: Parts = vec![if lost {
        (
            Cow::Owned(format!("upstream LOST {arrow} ")),
            th.level_strong(Level::Critical),
        )
    } else {
        (
            Cow::Owned(format!("upstream lost{now_word} {arrow} ")),
            th.dim(),
        )
    }];
    match w.x509_until {
        Some(until) => {
            let left = until - now.timestamp();
            up.push((
                Cow::Owned(format!(
                    "X.509 {}until {} (in {})",
                    if words == Words::Full {
                        "continues "
                    } else {
                        ""
                    },
                    when(until, now, words),
                    fmt_secs(left)
                )),
                th.left(deadline_level(left, X509_WARN_SECS)),
            ));
        }
        None => up.push((
            Cow::Borrowed("X.509 stops now (no intermediate held)"),
            th.level(Level::Critical),
        )),
    }
    if w.jwt_stops_now {
        up.push(if lost {
            (Cow::Borrowed(", JWT stopped"), th.level(Level::Critical))
        } else {
            (Cow::Borrowed(", JWT stops now"), Style::new())
        });
    }
    up
}

/// What happens if the segment's server is lost now.
fn server_sentence(w: &SegmentWindow, now: DateTime<Utc>, th: Theme, words: Words) -> Parts {
    let now_word = if words == Words::Tiny { "" } else { " now" };
    let mut srv: Parts = vec![(
        Cow::Owned(format!("server lost{now_word} {} ", th.g.arrow)),
        th.dim(),
    )];
    match w.workloads_fail_at {
        Some(at) => {
            let left = at - now.timestamp();
            srv.push((
                Cow::Owned(format!(
                    "workloads fail at {} (in {})",
                    when(at, now, words),
                    fmt_secs(left)
                )),
                th.left(deadline_level(left, WORKLOADS_WARN_SECS)),
            ));
        }
        None => srv.push((Cow::Borrowed("no workload SVIDs below it"), Style::new())),
    }
    srv
}

/// `gcp · server gcp, downstream · 3 workload SVIDs`, and `STALE …` when the server is not
/// live.
fn segment_title(app: &App, w: &SegmentWindow, now: DateTime<Utc>, th: Theme) -> Parts {
    let role = if w.role == DaemonRole::Upstream {
        "root of trust"
    } else {
        w.role.as_str()
    };
    let plural = if w.workloads == 1 { "" } else { "s" };
    let mut p: Parts = vec![
        (Cow::Owned(w.segment.clone()), th.title()),
        (
            Cow::Owned(format!(
                " {dot} server {}, {role} {dot} {} workload SVID{plural}",
                w.server,
                w.workloads,
                dot = th.g.dot
            )),
            th.dim(),
        ),
    ];
    if let Some(s) = server_stale(app, w, now) {
        p.push((Cow::Borrowed("  "), Style::new()));
        p.push((Cow::Owned(format!("{s}: as last heard")), th.stale()));
    }
    p
}

/// `STALE …` when the segment's server is not live.
fn server_stale(app: &App, w: &SegmentWindow, now: DateTime<Utc>) -> Option<String> {
    let d = app.fleet.daemons.iter().position(|d| d.name == w.server)?;
    stale_marker(app, d, now)
}

/// A segment's four lines: title, upstream state, and the two sentences.
fn window_block(
    app: &App,
    w: &SegmentWindow,
    now: DateTime<Utc>,
    th: Theme,
    wd: u16,
) -> Vec<Parts> {
    let full = wd >= FULL_WIDTH;
    let room = wd.saturating_sub(3);
    let (up_line, lvl) =
        upstream_parts(w, now, if full { UpFmt::Full } else { UpFmt::Compact }, th);
    let mut up_parts: Parts = vec![
        (Cow::Borrowed("   upstream       "), th.dim()),
        (Cow::Owned(up_line), th.level(lvl)),
    ];
    if let Some(e) = &w.upstream_error {
        up_parts.push((Cow::Owned(format!(": {e}")), th.level(lvl)));
    }
    let indent = |mut p: Parts| {
        p.insert(0, (Cow::Borrowed("   "), Style::new()));
        p
    };
    let mut title = vec![(Cow::Borrowed(" "), Style::new())];
    title.extend(segment_title(app, w, now, th));
    vec![
        title,
        up_parts,
        indent(sentence(room, |words| upstream_sentence(w, now, th, words))),
        indent(sentence(room, |words| server_sentence(w, now, th, words))),
    ]
}

/// The segments view's rows from `off`, the selected one marked.
pub fn rows(
    app: &App,
    buf: &mut Buffer,
    list: Rect,
    (off, page): (usize, usize),
    sel: Option<usize>,
    now: DateTime<Utc>,
    th: Theme,
) {
    let wins = app.windows();
    let end = (off + page).min(wins.len());
    for (k, wi) in (off..end).enumerate() {
        let y = list.y + k as u16 * SEGMENT_LINES;
        for (j, parts) in window_block(app, &wins[wi], now, th, list.width)
            .iter()
            .enumerate()
        {
            spans(buf, list.x, y + j as u16, list.width, parts, th);
        }
        if sel == Some(wi) {
            select_row(buf, list, y);
        }
    }
}

/// The windows pane of a large terminal.
pub fn windows_pane(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    pane_title(
        buf,
        r,
        "autonomous window",
        "per segment, from live data",
        th,
    );
    let mut y = r.y + 1;
    for w in app.windows() {
        let mut lines = window_block(app, w, now, th, r.width);
        if !w.is_downstream() {
            // The root: no upstream sentence needed beyond the state.
            lines.remove(2);
        }
        for parts in lines {
            if y >= r.y + r.height {
                return;
            }
            spans(buf, r.x, y, r.width, &parts, th);
            y += 1;
        }
    }
}

/// SEGMENT UPSTREAM IF-UPSTREAM-LOST IF-SERVER-LOST.
static STRIP: Table = Table {
    columns: &[
        Column::fixed("SEGMENT", 8),
        Column::fixed("UPSTREAM", 20),
        Column::fixed("IF UPSTREAM LOST NOW", 26),
        Column::fill("IF SERVER LOST NOW", 0),
    ],
    right_pad: 1,
};

/// The compact per-segment table shown above the list on small terminals.
pub fn strip(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    pane_title(buf, r, "autonomous window", ":segments for detail", th);
    let cols = STRIP.solve(r.width);
    cols.header(buf, Rect::new(r.x, r.y + 1, r.width, 1), th);
    let shown = usize::from(r.height.saturating_sub(2));
    let wins = app.windows();
    for (k, w) in wins.iter().take(shown).enumerate() {
        let y = r.y + 2 + k as u16;
        if k + 1 == shown && wins.len() > shown {
            let msg = format!(
                "{} {} more segments: :segments",
                th.g.ellipsis,
                wins.len() - shown + 1
            );
            buf.set_stringn(r.x + 1, y, msg, usize::from(r.width - 2), th.dim());
            break;
        }
        let mut cells = cols.row(buf, r.x, y, th);
        cells.text(&w.segment, th.title());
        // A stale daemon's upstream state is only its last word: say so instead.
        match server_stale(app, w, now) {
            Some(s) => cells.text(&s, th.stale()),
            None => {
                let (up, lvl) = upstream_parts(w, now, UpFmt::Tiny, th);
                cells.text(&up, th.level(lvl));
            }
        }
        let (if_up, if_up_st) = strip_if_upstream_lost(w, now, th);
        cells.text(&if_up, if_up_st);
        cells.parts(&strip_if_server_lost(w, now, th));
    }
}

fn strip_if_upstream_lost(w: &SegmentWindow, now: DateTime<Utc>, th: Theme) -> (String, Style) {
    let lost = upstream_lost(w);
    let text = if !w.is_downstream() {
        th.g.none.to_string()
    } else {
        let x509 = match w.x509_until {
            Some(u) => format!("X.509 {}", fmt_secs(u - now.timestamp())),
            None => "X.509 stops".to_string(),
        };
        format!("{x509}, JWT {}", if lost { "stopped" } else { "stops" })
    };
    let style = if lost {
        th.level(Level::Critical)
    } else {
        Style::new()
    };
    (text, style)
}

fn strip_if_server_lost(w: &SegmentWindow, now: DateTime<Utc>, th: Theme) -> Parts {
    match w.workloads_fail_at {
        Some(at) => {
            let left = at - now.timestamp();
            vec![(
                Cow::Owned(format!("SVIDs fail in {}", fmt_secs(left))),
                th.left(deadline_level(left, WORKLOADS_WARN_SECS)),
            )]
        }
        None => vec![(Cow::Borrowed("no workload SVIDs"), th.dim())],
    }
}
