//! Other trust domains: every foreign bundle each server holds (federated or imported) with
//! its source and profile, sequence, the age of the last success, failures, when its earliest
//! root expires and the server's warnings; then which sequence of our bundle each isolated
//! peer acknowledged. Levels and ages come from `trustdeck_topology::fleet::federation`, on
//! the reporting daemon's clock.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::style::Style;
use trustdeck_topology::fleet::Level;
use trustdeck_topology::fleet::federation::{Reported, ReportedReceipt, receipt_behind};
use trustdeck_topology::ttl::fmt_secs;

use super::columns::{Column, Step, Table, Widths};
use super::theme::Theme;
use crate::app::App;
use crate::text::federation as words;

/// LEVEL TRUST-DOMAIN SOURCE SEQ LAST-SUCCESS FAILS ROOTS-EXPIRE SERVER WARNINGS; the server
/// and the source when there is room.
pub static TABLE: Table = Table {
    columns: &[
        Column::fixed("LEVEL", 10),
        Column::fixed("TRUST DOMAIN", 18),
        Column::grows("SOURCE", 0, &[Step::new(1, 23, 30)]),
        Column::fixed("SEQ", 6).right(),
        Column::fixed("LAST OK", 9).right(),
        Column::fixed("FAILS", 5).right(),
        Column::fixed("ROOTS EXP", 10).right(),
        Column::grows("SERVER", 0, &[Step::new(2, 10, 30)]),
        Column::fill("WARNINGS / RECEIPT", 8),
    ],
    right_pad: 0,
};

/// Draws row `i`: a foreign trust domain, or (after them) a peer's receipt.
pub fn row(
    app: &App,
    cols: &Widths,
    buf: &mut Buffer,
    at: (u16, u16),
    i: usize,
    now: DateTime<Utc>,
    th: Theme,
) {
    let foreign = app.fleet.foreign();
    match foreign.get(i) {
        Some(r) => foreign_row(app, cols, buf, at, r, now, th),
        None => {
            if let Some(r) = app.fleet.receipts().get(i - foreign.len()) {
                receipt_row(app, cols, buf, at, r, now, th);
            }
        }
    }
}

fn foreign_row(
    app: &App,
    cols: &Widths,
    buf: &mut Buffer,
    (x0, y): (u16, u16),
    r: &Reported<'_>,
    now: DateTime<Utc>,
    th: Theme,
) {
    let a = app.fleet.assess_foreign(r, now);
    let td = r.td;
    let ds = &app.fleet.daemons[r.daemon];
    let g = th.g;
    let mut cells = cols.row(buf, x0, y, th);
    let word = if a.stale { "stale" } else { a.level.as_str() };
    cells.text(&g.tagged(g.level(a.level), word), th.level(a.level));
    cells.middle("", &td.trust_domain, th.title());
    cells.text(&words::source(td), Style::new());
    cells.text(&words::sequence(td), Style::new());
    let age = a.age.map_or_else(|| "never".to_string(), fmt_secs);
    let age_lvl = if a.stale { Level::Warning } else { Level::Ok };
    cells.text(&age, th.left(age_lvl));
    let fail_lvl = if td.consecutive_failures > 0 {
        Level::Warning
    } else {
        Level::Ok
    };
    cells.text(&td.consecutive_failures.to_string(), th.left(fail_lvl));
    let exp = match a.earliest_expiry_in {
        None => g.none.to_string(),
        Some(s) if s <= 0 => "expired".to_string(),
        Some(s) => fmt_secs(s),
    };
    cells.text(&exp, th.left(a.level));
    let server_style = if ds.is_live() { th.dim() } else { th.stale() };
    cells.text(&ds.name, server_style);
    let what = match (a.reasons.is_empty(), td.endpoint_url.is_empty()) {
        (false, _) => a.reasons.join("; "),
        (true, false) => td.endpoint_url.clone(),
        (true, true) => String::new(),
    };
    let style = if a.level > Level::Ok {
        th.level(a.level)
    } else {
        th.dim()
    };
    cells.text(&what, style);
}

fn receipt_row(
    app: &App,
    cols: &Widths,
    buf: &mut Buffer,
    (x0, y): (u16, u16),
    r: &ReportedReceipt<'_>,
    now: DateTime<Utc>,
    th: Theme,
) {
    let rec = r.receipt;
    let behind = receipt_behind(rec, r.own_sequence);
    let lvl = if behind { Level::Warning } else { Level::Ok };
    let g = th.g;
    let mut cells = cols.row(buf, x0, y, th);
    let word = if behind { "behind" } else { "current" };
    cells.text(&g.tagged(g.level(lvl), word), th.level(lvl));
    cells.middle("", &rec.peer_trust_domain, th.title());
    cells.text("receipt", Style::new());
    cells.text(&rec.sequence.to_string(), th.left(lvl));
    let dnow = app.fleet.daemon_now(r.daemon, now).timestamp();
    cells.text(&fmt_secs((dnow - rec.received_at).max(0)), Style::new());
    cells.text(g.none, th.dim());
    cells.text(g.none, th.dim());
    cells.text(&app.fleet.daemons[r.daemon].name, th.dim());
    cells.text(&words::receipt(rec, r.own_sequence), th.dim());
}
