//! Draws the console's state. Pure: no I/O, no state changes; only the visible rows are drawn
//! (a slice of the cached rows), so a frame costs the same for 100 nodes or 100k. Where things
//! go comes from [`layout`](crate::layout); every table is a [`columns::Table`].
//!
//! - [`header`]: the title and reasons lines; [`footer`]: hints, typed input, messages;
//! - one module per view: [`tree`], [`expiring`], [`segments`], [`events`], [`daemons`],
//!   [`timeline`], [`federation`];
//! - [`overlay`]: the help and detail popups; [`too_small`]: a terminal below 80×24.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

use crate::app::{App, View};
use crate::layout::{self, item_height, rows_in};

pub mod columns;
pub mod daemons;
pub mod draw;
pub mod events;
pub mod expiring;
pub mod federation;
pub mod footer;
pub mod header;
pub mod overlay;
pub mod segments;
pub mod theme;
pub mod timeline;
pub mod too_small;
pub mod tree;

use draw::{Parts, pane_title, select_row, title_bar};
use theme::Theme;

/// Draws the whole console; `color: false` draws without colour (NO_COLOR). The symbols
/// follow `app.charset`.
pub fn render(app: &App, frame: &mut Frame, now: DateTime<Utc>, color: bool) {
    let area = frame.area();
    let th = Theme {
        color,
        g: app.charset.glyphs(),
    };
    if !layout::fits(area) {
        too_small::too_small(frame, area, th);
        return;
    }
    let a = layout::areas(area, app.view, app.content(app.view));
    let buf = frame.buffer_mut();
    header::header(app, buf, a.header, now, th);
    header::reasons(app, buf, a.reasons, th);
    if a.strip.height > 0 {
        segments::strip(app, buf, a.strip, now, th);
    }
    main_view(app, buf, a.main, now, th);
    if a.windows.area() > 0 {
        segments::windows_pane(app, buf, a.windows, now, th);
    }
    if a.soonest.area() > 0 {
        expiring::soonest_pane(app, buf, a.soonest, now, th);
    }
    if a.events.height > 0 {
        let r = a.events;
        let right = match filtered(app, true, th.g.dot) {
            Some(f) => format!("newest first {} {f}", th.g.dot),
            None => "newest first".to_string(),
        };
        pane_title(buf, r, "events", &right, th);
        let rows = Rect::new(r.x, r.y + 1, r.width, r.height - 1);
        events::rows(app, buf, (rows, None), (0, None), now, th);
    }
    let cursor = footer::footer(app, buf, a.footer, th);
    overlay::overlay(app, frame, area, now, th);
    if let Some((x, y)) = cursor {
        frame.set_cursor_position((x, y));
    }
}

/// `[tree]  expiring  segments …`, the current view reversed.
fn view_tabs(app: &App, th: Theme) -> Parts {
    let mut v = Vec::new();
    for (i, view) in app.views().iter().enumerate() {
        if i > 0 {
            v.push((Cow::Borrowed(" "), Style::new()));
        }
        if *view == app.view {
            v.push((
                Cow::Owned(format!("[{}]", view.name())),
                th.title().patch(Theme::selected()),
            ));
        } else {
            v.push((Cow::Owned(format!(" {} ", view.name())), th.dim()));
        }
    }
    v
}

/// What the title bar says on the right: count, filter matches, position.
fn view_info(app: &App, v: View, len: usize, th: Theme) -> String {
    let mut info = match v {
        View::Tree => format!("{} nodes", app.tree().nodes.len()),
        View::Expiring => format!("{len} soonest first"),
        View::Segments => format!("{len} segments"),
        View::Events => format!("{len} newest first"),
        View::Daemons => format!("{len} daemons"),
        View::Timeline => format!("{len} rows"),
        View::Federation => {
            let receipts = app.fleet.receipts().len();
            let n = |k: usize, one: &str| format!("{k} {one}{}", if k == 1 { "" } else { "s" });
            format!(
                "{}, {}",
                n(len - receipts, "trust domain"),
                n(receipts, "receipt")
            )
        }
    };
    if !app.filter.is_empty() && matches!(v, View::Tree | View::Expiring | View::Events) {
        info = format!("{len} match \"{}\" {} {info}", app.filter, th.g.dot);
    }
    if v == View::Events
        && let Some(f) = app.event_filter.describe()
    {
        info = format!("{f} {} {info}", th.g.dot);
    }
    if len > 0 {
        info.push_str(&format!(" {} {}/{len}", th.g.dot, app.cursor(v) + 1));
    }
    info
}

/// What a pane that would be fleet-wide is narrowed to: the `/` filter, and for events the
/// events view's own filters (None: fleet-wide).
pub fn filtered(app: &App, events: bool, dot: &str) -> Option<String> {
    let mut parts = Vec::new();
    if !app.filter.is_empty() {
        parts.push(format!("filtered /{}", app.filter));
    }
    if events && let Some(f) = app.event_filter.describe() {
        parts.push(f);
    }
    (!parts.is_empty()).then(|| parts.join(&format!(" {dot} ")))
}

/// The main area: the view's title bar with tabs, its column header and its visible rows.
fn main_view(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    let v = app.view;
    let len = app.len(v);
    title_bar(buf, r, &view_tabs(app, th), &view_info(app, v, len, th), th);
    let list = rows_in(r, v);
    let head = Rect::new(r.x, r.y + 1, r.width, 1);
    // Keep the cursor visible even if the stored offset is stale (e.g. right after a resize).
    let page = (usize::from(list.height) / usize::from(item_height(v))).max(1);
    let cur = app.cursor(v);
    let mut off = app.offset(v);
    if cur < off {
        off = cur;
    } else if cur >= off + page {
        off = cur + 1 - page;
    }
    if len == 0 {
        if let Some(t) = table(v) {
            t.solve(head.width).header(buf, head, th);
        }
        empty(app, buf, list, th);
        return;
    }
    let sel = Some(cur);
    let end = (off + page).min(len);
    match v {
        View::Segments => segments::rows(app, buf, list, (off, page), sel, now, th),
        View::Events => {
            events::rows(app, buf, (list, Some(head)), (off, sel), now, th);
        }
        View::Tree | View::Expiring | View::Daemons | View::Timeline | View::Federation => {
            let Some(t) = table(v) else { return };
            let mut cols = t.solve(r.width);
            if v == View::Daemons {
                daemons::fit_names(app, &mut cols);
            }
            if v == View::Timeline {
                timeline::header(&cols, buf, head, th);
            } else {
                cols.header(buf, head, th);
            }
            for (k, i) in (off..end).enumerate() {
                let at = (r.x, list.y + k as u16);
                match v {
                    View::Tree => tree::row(app, &cols, buf, at, app.rows()[i], now, th),
                    View::Expiring => {
                        expiring::row(app, &cols, buf, at, app.expiring()[i], now, th)
                    }
                    View::Timeline => timeline::row(app, &cols, buf, at, i, now, th),
                    View::Federation => federation::row(app, &cols, buf, at, i, now, th),
                    _ => daemons::row(app, &cols, buf, at, i, now, th),
                }
                if sel == Some(i) {
                    select_row(buf, r, at.1);
                }
            }
        }
    }
}

/// The column table of `v` (the segments view has none: it draws blocks).
fn table(v: View) -> Option<&'static columns::Table> {
    match v {
        View::Tree => Some(&tree::TABLE),
        View::Expiring => Some(&expiring::TABLE),
        View::Events => Some(&events::TABLE),
        View::Daemons => Some(&daemons::TABLE),
        View::Timeline => Some(&timeline::TABLE),
        View::Federation => Some(&federation::TABLE),
        View::Segments => None,
    }
}

/// Why the list is empty: the filter, nothing yet, or no daemon reached.
fn empty(app: &App, buf: &mut Buffer, list: Rect, th: Theme) {
    let msg = if let Err(e) = app.filter_parsed() {
        format!("{e} (esc clears the filter)")
    } else if !app.filter.is_empty() {
        format!("nothing matches \"{}\" (esc clears the filter)", app.filter)
    } else if app.view == View::Events && app.event_filter.describe().is_some() {
        "no event passes the events filters (s, f change them)".to_string()
    } else if app.fleet.daemons.iter().any(|d| d.is_live()) {
        "nothing to show".to_string()
    } else {
        format!(
            "waiting for the daemons' streams{} (:daemons shows the connections)",
            th.g.ellipsis
        )
    };
    buf.set_stringn(
        list.x + 1,
        list.y,
        th.fit(&msg, usize::from(list.width) - 1),
        usize::from(list.width),
        th.dim(),
    );
}
