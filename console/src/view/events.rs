//! Fleet events, newest first: the events view and the events pane of a large terminal.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use trustdeck_topology::ttl::fmt_time;

use super::columns::{Column, Table, Widths};
use super::draw::select_row;
use super::theme::Theme;
use crate::app::App;
use crate::text::event::severity_word;
use crate::text::format::short_time;
use crate::text::width;
use trustdeck_topology::fleet::FleetEvent;

const TIME: usize = 0;
const DAEMON: usize = 2;
const KIND: usize = 3;
const MESSAGE: usize = 4;

/// A daemon name longer than this is cut in the middle (its end tells `…-1` from `…-2`).
const DAEMON_MAX: u16 = 20;
/// The longest kind (`console-reconnected`).
const KIND_MAX: u16 = 20;
/// Columns of a full time (`2026-11-24 07:12:03Z`).
const FULL_TIME: u16 = 20;
/// Columns the message keeps when the daemon and kind columns widen.
const MESSAGE_KEEP: u16 = 24;

/// TIME SEVERITY DAEMON KIND MESSAGE, at their least; [`widths`] fits them to what is shown.
pub static TABLE: Table = Table {
    columns: &[
        Column::fixed("TIME", 10),
        Column::fixed("SEVERITY", 9),
        Column::fixed("DAEMON", 6),
        Column::fixed("KIND", 16),
        Column::fill("MESSAGE", 0),
    ],
    right_pad: 1,
};

/// The events on screen: the first index shown (so that the selected one is visible) and
/// the events' indices in the fleet's list.
fn visible(app: &App, page: usize, off: usize, sel: Option<usize>) -> (usize, Vec<usize>) {
    let off = match sel {
        Some(c) if c >= off + page => c + 1 - page,
        Some(c) if c < off => c,
        _ => off,
    };
    let shown = app.events().iter().skip(off).take(page).copied().collect();
    (off, shown)
}

/// The columns on `w` columns: the daemon names (of the whole fleet) and the kinds as wide as
/// the longest (within a bound), then the message whole when it can be, then the full time if
/// the messages still keep their room. Measured over every event the list has, so that the
/// columns stay put while it scrolls.
fn widths(app: &App, w: u16) -> Widths {
    let mut cols = TABLE.solve(w);
    let events: Vec<&FleetEvent> = app
        .events()
        .iter()
        .filter_map(|&i| app.fleet.events.get(i))
        .collect();
    let longest = |f: &dyn Fn(&FleetEvent) -> usize| events.iter().map(|e| f(e)).max();
    let daemon = app.fleet.daemons.iter().map(|d| width(&d.name)).max();
    let kind = longest(&|fe| width(fe.event.kind_wire().as_str()));
    let message = longest(&|fe| width(&app.event_message(fe))).unwrap_or(0);
    let clamp = |n: Option<usize>, least: u16, most: u16| {
        u16::try_from(n.unwrap_or(0))
            .unwrap_or(most)
            .clamp(least, most)
    };
    cols.fit(DAEMON, clamp(daemon, 6, DAEMON_MAX), MESSAGE_KEEP);
    cols.fit(KIND, clamp(kind, 4, KIND_MAX), MESSAGE_KEEP);
    let room = usize::from(cols.get(MESSAGE));
    if room >= message + usize::from(FULL_TIME - cols.get(TIME)) {
        cols.resize(TIME, FULL_TIME);
    }
    cols
}

/// The events from `off` in `r` (`head`: where to draw the column header, if anywhere),
/// scrolled so that the selected one is visible.
pub fn rows(
    app: &App,
    buf: &mut Buffer,
    (r, head): (Rect, Option<Rect>),
    (off, sel): (usize, Option<usize>),
    now: DateTime<Utc>,
    th: Theme,
) {
    let (off, shown) = visible(app, usize::from(r.height), off, sel);
    let cols = widths(app, r.width);
    if let Some(h) = head {
        cols.header(buf, h, th);
    }
    for (k, &i) in shown.iter().enumerate() {
        let Some(fe) = app.fleet.events.get(i) else {
            continue;
        };
        let e = &fe.event;
        let y = r.y + k as u16;
        let secs = e.at_ms.div_euclid(1000);
        let time = if cols.get(TIME) >= FULL_TIME {
            fmt_time(secs)
        } else {
            short_time(secs, now)
        };
        let (sev, lvl) = severity_word(e.severity_wire(), th.g);
        let sev_st = lvl.map(|l| th.level(l)).unwrap_or_else(|| th.dim());
        let mut cells = cols.row(buf, r.x, y, th);
        cells.text(&time, th.dim());
        cells.text(&sev, sev_st);
        cells.middle("", &fe.daemon, Style::new());
        cells.text(e.kind_wire().as_str(), th.tag());
        cells.text(&app.event_message(fe), Style::new());
        if sel == Some(off + k) {
            select_row(buf, r, y);
        }
    }
    if shown.is_empty() && r.height > 0 {
        buf.set_stringn(r.x + 1, r.y, "no events yet", 20, th.dim());
    }
}
