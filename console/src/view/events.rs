//! Fleet events, newest first: the events view and the events pane of a large terminal.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use trustdeck_topology::ttl::fmt_time;

use super::columns::{Column, Step, Table};
use super::draw::select_row;
use super::theme::Theme;
use crate::app::App;
use crate::text::event::severity_word;
use crate::text::format::short_time;

/// TIME and KIND widen together from 120 columns (the message then keeps 55).
const WIDE: Step = Step::new(1, 20, 55);

const TIME: usize = 0;

/// TIME SEVERITY DAEMON KIND MESSAGE.
pub static TABLE: Table = Table {
    columns: &[
        Column::grows("TIME", 10, &[WIDE]),
        Column::fixed("SEVERITY", 9),
        Column::fixed("DAEMON", 10),
        Column::grows("KIND", 16, &[WIDE]),
        Column::fill("MESSAGE", 0),
    ],
    right_pad: 1,
};

/// The events from `off` in `r`, scrolled so that the selected one is visible.
pub fn rows(
    app: &App,
    buf: &mut Buffer,
    r: Rect,
    off: usize,
    sel: Option<usize>,
    now: DateTime<Utc>,
    th: Theme,
) {
    let idx = app.events();
    let cols = TABLE.solve(r.width);
    let page = usize::from(r.height);
    let off = match sel {
        Some(c) if c >= off + page => c + 1 - page,
        Some(c) if c < off => c,
        _ => off,
    };
    for (k, &i) in idx.iter().skip(off).take(page).enumerate() {
        let Some(fe) = app.fleet.events.get(i) else {
            continue;
        };
        let e = &fe.event;
        let y = r.y + k as u16;
        let secs = e.at_ms.div_euclid(1000);
        let time = if cols.get(TIME) >= 20 {
            fmt_time(secs)
        } else {
            short_time(secs, now)
        };
        let (sev, lvl) = severity_word(e.severity_wire(), th.g);
        let sev_st = lvl.map(|l| th.level(l)).unwrap_or_else(|| th.dim());
        let mut cells = cols.row(buf, r.x, y, th);
        cells.text(&time, th.dim());
        cells.text(&sev, sev_st);
        cells.text(&fe.daemon, Style::new());
        cells.text(e.kind_wire().as_str(), th.tag());
        cells.text(&app.event_message(fe), Style::new());
        if sel == Some(off + k) {
            select_row(buf, r, y);
        }
    }
    if idx.is_empty() && r.height > 0 {
        buf.set_stringn(r.x + 1, r.y, "no events yet", 20, th.dim());
    }
}
