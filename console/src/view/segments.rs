//! The autonomous window of every segment: what happens if its upstream, or its server, is
//! lost now, or what is happening since it was (the words are `text::window`'s). Three forms:
//! the segments view (a block per segment), the windows pane of a large terminal, and the
//! compact strip above the list on a small one.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use trustdeck_topology::DaemonRole;
use trustdeck_topology::fleet::{Reach, SegmentWindow};

use super::columns::{Column, Table};
use super::draw::{Parts, pane_title, select_row, spans};
use super::theme::Theme;
use crate::app::App;
use crate::layout::SEGMENT_LINES;
use crate::text::TextLine;
use crate::text::window::{
    Words, fitted, reach_marker, server_facts, server_sentence, strip_server, strip_upstream,
    upstream_sentence, upstream_state,
};

/// From this width a window block says times in full.
const FULL_WIDTH: u16 = 100;

/// A line of the window's words, styled.
fn styled(l: TextLine, th: Theme) -> Parts {
    l.spans.into_iter().map(|(t, r)| (t, th.style(r))).collect()
}

/// `gcp · server gcp, downstream · 3 workload SVIDs`, and `UNREACHABLE 20s: last known` when
/// the server is not live.
fn segment_title(w: &SegmentWindow, now: DateTime<Utc>, th: Theme) -> Parts {
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
    if let Some(s) = reach_marker(w, now) {
        // Never reached: nothing of its own is shown, only what others report about it.
        let what = match w.reach {
            Reach::NeverReached { .. } => "others' records",
            _ => "last known",
        };
        p.push((Cow::Borrowed("  "), Style::new()));
        p.push((Cow::Owned(format!("{s}: {what}")), th.stale()));
    }
    p
}

/// A sentence's line, indented under its segment's title.
fn indent(mut p: Parts) -> Parts {
    p.insert(0, (Cow::Borrowed("   "), Style::new()));
    p
}

/// A segment's four lines: title, upstream state, and the two sentences.
fn window_block(w: &SegmentWindow, now: DateTime<Utc>, th: Theme, wd: u16) -> Vec<Parts> {
    let full = wd >= FULL_WIDTH;
    let words = if full { Words::Full } else { Words::Short };
    let room = usize::from(wd.saturating_sub(3));
    let (up_line, lvl) = upstream_state(w, now, words, th.g);
    let stale = w.upstream.as_ref().is_some_and(|u| u.as_of.is_some());
    let up_style = if stale { th.stale() } else { th.level(lvl) };
    let mut up_parts: Parts = vec![
        (Cow::Borrowed("   upstream       "), th.dim()),
        (Cow::Owned(up_line), up_style),
    ];
    if let Some(e) = w.upstream.as_ref().and_then(|u| u.error.as_ref()) {
        up_parts.push((Cow::Owned(format!(": {e}")), up_style));
    }
    let mut title = vec![(Cow::Borrowed(" "), Style::new())];
    title.extend(segment_title(w, now, th));
    vec![
        title,
        up_parts,
        indent(styled(
            fitted(room, full, |words| upstream_sentence(w, now, words, th.g)),
            th,
        )),
        indent(styled(
            fitted(room, full, |words| server_sentence(w, now, words, th.g)),
            th,
        )),
    ]
}

/// A segment's block in the segments view: [`window_block`], with a lost server's facts on
/// two lines (the block's spare line) when one line would drop some of them.
fn view_block(w: &SegmentWindow, now: DateTime<Utc>, th: Theme, wd: u16) -> Vec<Parts> {
    let mut lines = window_block(w, now, th, wd);
    let full = wd >= FULL_WIDTH;
    let room = usize::from(wd.saturating_sub(3));
    let one = fitted(room, full, |words| server_sentence(w, now, words, th.g));
    let most = server_sentence(w, now, if full { Words::Full } else { Words::Short }, th.g);
    if one.width() < most.width()
        && let Some([who, rest]) = server_facts(w, now, (room, full), th.g)
    {
        lines.pop();
        lines.push(indent(styled(who, th)));
        lines.push(indent(styled(rest, th)));
    }
    lines
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
        for (j, parts) in view_block(&wins[wi], now, th, list.width)
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
        "per segment; last-known data marked",
        th,
    );
    let mut y = r.y + 1;
    for w in app.windows() {
        let mut lines = window_block(w, now, th, r.width);
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

/// SEGMENT UPSTREAM IF-UPSTREAM-LOST IF-SERVER-LOST (for a loss that happened, the UPSTREAM
/// column says so and the others say what follows).
static STRIP: Table = Table {
    columns: &[
        Column::fixed("SEGMENT", 8),
        Column::fixed("UPSTREAM", 19),
        Column::fixed("IF UPSTREAM LOST", 26),
        Column::fill("IF SERVER LOST", 0),
    ],
    // `failing since 07:11:55Z` fits at 80 columns.
    right_pad: 0,
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
        // A server not live: its upstream state is only its last word; say so instead.
        match reach_marker(w, now) {
            Some(s) => cells.text(&s, th.stale()),
            None => {
                let (up, lvl) = upstream_state(w, now, Words::Tiny, th.g);
                cells.text(&up, th.level(lvl));
            }
        }
        let (if_up, role) = strip_upstream(w, now, th.g);
        cells.text(&if_up, th.style(role));
        let (if_srv, role) = strip_server(w, now, usize::from(cols.get(3)));
        cells.text(&if_srv, th.style(role));
    }
}
