//! The timeline: for each segment and each daemon, its health over the last hour as a strip
//! of cells (one per minute, the worst state seen in it; the newest at the right), and since
//! when its current state holds.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

use super::columns::{Column, Step, Table, Widths};
use super::theme::Theme;
use crate::app::App;
use crate::app::history::{INTERVAL_SECS, Mark, SLOTS, Series, Subject};
use crate::text::format::clock_time;

const NOW: usize = 2;
const HISTORY: usize = 3;

/// KIND NAME NOW HISTORY; the name widens when the strip still shows the whole hour. The NOW
/// header is the cells' key, the history's an axis of minutes.
pub static TABLE: Table = Table {
    columns: &[
        Column::fixed("KIND", 7),
        Column::grows("NAME", 10, &[Step::new(1, 24, SLOTS as u16)]),
        Column::fixed("NOW", 30),
        Column::fill("LAST HOUR, 1 CELL = 1 MIN", 10),
    ],
    right_pad: 1,
};

/// The key of the cells, in the NOW column's header (30 columns, so at every width):
/// `▁ok ▄warn █crit ▒unreach ·none`.
fn legend(th: Theme) -> String {
    let t = th.g.timeline;
    format!(
        "{}ok {}warn {}crit {}unreach {}none",
        t[1], t[2], t[3], t[4], t[0]
    )
}

fn cell_glyph(m: Option<Mark>, th: Theme) -> (&'static str, Style) {
    let t = th.g.timeline;
    match m {
        None => (t[0], th.dim()),
        Some(Mark::Ok) => (t[1], th.level(Mark::Ok.level())),
        Some(Mark::Warning) => (t[2], th.level(Mark::Warning.level())),
        Some(Mark::Critical) => (t[3], th.level(Mark::Critical.level())),
        Some(Mark::Unreachable) => (t[4], th.level_strong(Mark::Unreachable.level())),
    }
}

/// `✗ critical since 23:29:24Z`, or `since 23:29:24Z or before` when it already held at the
/// console's first sample.
fn now_text(r: &Series, now: DateTime<Utc>, th: Theme) -> (String, Style) {
    let Some((m, since)) = r.current else {
        return ("no sample yet".to_string(), th.dim());
    };
    let word = th.g.tagged(th.sym(m.level()), m.word());
    if m == Mark::Ok {
        return (word, th.level(m.level()));
    }
    let before = if r.seen_start { "" } else { " or before" };
    (
        format!("{word} since {}{before}", clock_time(since, now, true)),
        th.level_strong(m.level()),
    )
}

/// The column header with the history's time axis: `-45m`, `-30m`, … and `now`.
pub fn header(cols: &Widths, buf: &mut Buffer, r: Rect, th: Theme) {
    cols.header(buf, r, th);
    let now_x = r.x + 1 + (0..NOW).map(|i| cols.get(i) + 1).sum::<u16>();
    let now_w = usize::from(cols.get(NOW));
    buf.set_stringn(now_x, r.y, " ".repeat(now_w), now_w, Style::new());
    buf.set_stringn(now_x, r.y, legend(th), now_w, th.head());
    let n = usize::from(cols.get(HISTORY)).min(SLOTS);
    let x0 = r.x + 1 + (0..HISTORY).map(|i| cols.get(i) + 1).sum::<u16>();
    let mut axis = vec![' '; n];
    let mut put = |at: usize, label: &str| {
        if at + label.len() <= n && axis[at..at + label.len()].iter().all(|c| *c == ' ') {
            for (k, c) in label.chars().enumerate() {
                axis[at + k] = c;
            }
        }
    };
    put(n.saturating_sub(3), "now");
    let per_min = 60 / INTERVAL_SECS as usize;
    for ago in (15..=60).step_by(15) {
        let cells = ago * per_min;
        if cells < n {
            let label = format!("-{ago}m");
            // Left edge of the label at the cell `ago` minutes back (gap after it).
            put(n - 1 - cells, &label);
        }
    }
    let axis: String = axis.into_iter().collect();
    let w = cols.get(HISTORY);
    buf.set_stringn(
        x0,
        r.y,
        " ".repeat(usize::from(w)),
        usize::from(w),
        Style::new(),
    );
    buf.set_stringn(x0, r.y, axis, usize::from(w), th.head());
}

/// Draws timeline row `i` at line `y`.
pub fn row(
    app: &App,
    cols: &Widths,
    buf: &mut Buffer,
    (x0, y): (u16, u16),
    i: usize,
    now: DateTime<Utc>,
    th: Theme,
) {
    let Some(r) = app.history.rows.get(i) else {
        return;
    };
    let mut cells = cols.row(buf, x0, y, th);
    let kind = match r.subject {
        Subject::Segment => "segment",
        Subject::Daemon => "daemon",
    };
    cells.text(kind, th.tag());
    // Cut in the middle: `gcp-workloads-1` and `-2` differ at the end.
    cells.middle("", &r.name, th.title());
    let (t, st) = now_text(r, now, th);
    cells.text(&t, st);
    let n = usize::from(cols.get(HISTORY)).min(SLOTS);
    let parts: Vec<(Cow<'_, str>, Style)> = r
        .cells(now, n)
        .into_iter()
        .map(|m| {
            let (g, s) = cell_glyph(m, th);
            (Cow::Borrowed(g), s)
        })
        .collect();
    cells.parts(&parts);
}
