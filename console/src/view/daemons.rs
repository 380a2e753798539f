//! The console's own link to every daemon: connection, last heard, clock skew, the daemon's
//! upstream link, its stream revision, and the error or endpoint (for a stranded agent: what
//! it needs and the recovery).

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::style::Style;
use trustdeck_topology::fleet::{DaemonConn, Level, stranded};
use trustdeck_topology::ttl::fmt_secs;

use super::columns::{Column, Step, Table, Widths};
use super::theme::Theme;
use crate::app::App;
use crate::text::format::short_time;
use trustdeck_topology::fleet::conn_level;

/// Columns the error or endpoint keeps before optional columns are shown.
const LINK_KEEP: u16 = 24;

/// Clock skew above this many milliseconds is a warning.
const SKEW_WARN_MS: i64 = 5_000;

/// NAME ROLE SEGMENT CONSOLE-LINK HEARD SKEW UPSTREAM REV ERROR/ENDPOINT; the segment, the
/// upstream and the revision when there is room.
pub static TABLE: Table = Table {
    columns: &[
        Column::fixed("NAME", 10),
        Column::fixed("ROLE", 10),
        Column::grows("SEGMENT", 0, &[Step::new(1, 8, LINK_KEEP)]),
        Column::fixed("CONSOLE LINK", 15),
        Column::fixed("HEARD", 9).right(),
        Column::fixed("SKEW", 7).right(),
        Column::grows("UPSTREAM", 0, &[Step::new(2, 16, LINK_KEEP)]),
        Column::grows("REV", 0, &[Step::new(3, 6, LINK_KEEP)]).right(),
        Column::fill("ERROR / ENDPOINT", 8),
    ],
    right_pad: 0,
};

/// A name longer than this is cut in the middle.
const NAME_MAX: u16 = 24;
/// Columns the error or endpoint keeps when the name column widens.
const NAME_KEEP: u16 = 16;

/// Widens (or narrows) the NAME column of `cols` to the longest daemon name, within
/// [`NAME_MAX`] and as long as the error keeps [`NAME_KEEP`] columns.
pub fn fit_names(app: &App, cols: &mut Widths) {
    let longest = app
        .fleet
        .daemons
        .iter()
        .map(|d| crate::text::width(&d.name))
        .max()
        .unwrap_or(0);
    let want = u16::try_from(longest)
        .unwrap_or(NAME_MAX)
        .clamp(4, NAME_MAX);
    cols.fit(0, want, NAME_KEEP);
}

/// Draws daemon `d`'s row at line `y`.
pub fn row(
    app: &App,
    cols: &Widths,
    buf: &mut Buffer,
    (x0, y): (u16, u16),
    d: usize,
    now: DateTime<Utc>,
    th: Theme,
) {
    let ds = &app.fleet.daemons[d];
    let mut cells = cols.row(buf, x0, y, th);
    cells.middle("", &ds.name, th.title());
    cells.text(ds.role().as_str(), Style::new());
    cells.text(ds.segment(), Style::new());
    let g = th.g;
    let (conn, lvl, err) = match &ds.conn {
        DaemonConn::Live => (format!("{} live", g.ok), Level::Ok, None),
        DaemonConn::Connecting => (format!("{} connecting", g.ellipsis), Level::Warning, None),
        DaemonConn::Lost { since, error } => (
            format!(
                "{} lost {}",
                g.critical,
                fmt_secs((now - *since).num_seconds().max(0))
            ),
            Level::Critical,
            Some(error.as_str()),
        ),
        DaemonConn::NeverReached { error, .. } => (
            format!("{} never reached", g.critical),
            Level::Critical,
            Some(error.as_str()),
        ),
    };
    cells.text(&conn, th.level(lvl));
    // Heard: live now, else when the last message came (ages count from the loss, in the
    // link column).
    let heard = match (&ds.conn, ds.last_heard) {
        (DaemonConn::Live, _) => "live".to_string(),
        (_, Some(t)) => short_time(t.timestamp(), now),
        (_, None) => "never".to_string(),
    };
    cells.text(&heard, Style::new());
    let skew_lvl = if ds.skew_ms.abs() > SKEW_WARN_MS {
        Level::Warning
    } else {
        Level::Ok
    };
    cells.text(
        &format!("{:+.1}s", ds.skew_ms as f64 / 1000.0),
        th.left(skew_lvl),
    );
    match &ds.upstream {
        None => cells.text(g.none, th.dim()),
        Some(u) if !ds.is_live() => {
            cells.text(&format!("? was {}", u.state_wire()), th.stale());
        }
        Some(u) => {
            let state = u.state_wire();
            let l = conn_level(state);
            cells.text(&format!("{} {state}", g.level(l)), th.level(l));
        }
    }
    cells.text(&ds.revision.to_string(), th.dim());
    // A live agent stranded by its server: what it needs and the recovery, in place of the
    // endpoint.
    let stranded = ds
        .upstream
        .as_ref()
        .filter(|_| ds.is_live())
        .and_then(stranded::reason)
        .map(|_| format!("{}; recover: {}", stranded::NEEDS, stranded::RECOVERY));
    match (err, stranded) {
        (Some(e), _) => cells.text(e, th.level(Level::Critical)),
        (None, Some(s)) => cells.text(&s, th.level(Level::Critical)),
        (None, None) => cells.text(&ds.endpoint, th.dim()),
    }
}
