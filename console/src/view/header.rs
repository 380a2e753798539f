//! The two top lines: trust domain, fleet health, live daemons, clock and the mode badge
//! (READ-ONLY, or OPERATOR); then a runbook in progress, else the first reason the fleet is not
//! healthy (or that it is).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use trustdeck_topology::fleet::Level;
use trustdeck_topology::ttl::fmt_time;

use super::draw::{Parts, spans};
use super::theme::Theme;
use crate::app::App;
use crate::text::width;

/// The mode badge, with its padding: read-only (the default) or operator.
const BADGE: &str = " READ-ONLY ";
const OPERATOR: &str = " OPERATOR ";

/// Below this width the header drops the product name and the date.
const NARROW: u16 = 100;

/// Draws the title line.
pub fn header(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    let narrow = r.width < NARROW;
    let mut left = status_parts(app, narrow, th);
    let clock = if narrow {
        now.format("%H:%M:%SZ").to_string()
    } else {
        fmt_time(now.timestamp())
    };
    let badge = if app.read_only { BADGE } else { OPERATOR };
    let badge_w = width(badge);
    let right_w = width(&clock) + 2 + badge_w;
    let left_w = usize::from(r.width).saturating_sub(right_w + 1);
    if app.mouse && !narrow {
        left.push((Cow::Owned(format!(" {} mouse on", th.g.vbar)), th.dim()));
    }
    spans(buf, r.x, r.y, left_w as u16, &left, th);
    let mut x = r.x + r.width - right_w as u16;
    buf.set_stringn(x, r.y, &clock, clock.len(), Style::new());
    x += width(&clock) as u16 + 2;
    let style = if app.read_only {
        th.badge()
    } else {
        th.level_strong(Level::Warning).patch(Theme::selected())
    };
    buf.set_stringn(x, r.y, badge, badge_w, style);
}

/// `trustdeck │ <trust domain> │ ✓ OK │ daemons 5/5 live`.
fn status_parts(app: &App, narrow: bool, th: Theme) -> Parts {
    // The words of `status` and `watch`: the worst current state, unreachable while a daemon
    // is (exit code 3), never softened while it lasts.
    let state = app.health().state();
    let (level, word) = (state.level(), state.as_str().to_uppercase());
    let live = app.fleet.daemons.iter().filter(|d| d.is_live()).count();
    let total = app.fleet.daemons.len();
    let daemons_style = if live < total {
        th.level_strong(Level::Critical)
    } else {
        Style::new()
    };
    let mut left: Parts = Vec::new();
    if !narrow {
        left.push((Cow::Borrowed(" trustdeck "), th.title()));
        left.push((Cow::Borrowed(th.g.vbar), th.dim()));
    }
    let td = app.trust_domain().unwrap_or("(trust domain unknown)");
    let lost = if live < total {
        format!("{} ", th.g.critical)
    } else {
        String::new()
    };
    let sep: Cow<'static, str> = Cow::Owned(format!(" {} ", th.g.vbar));
    left.extend([
        (Cow::Borrowed(" "), Style::new()),
        (Cow::Owned(td.to_string()), Style::new()),
        (sep.clone(), th.dim()),
        (
            Cow::Owned(th.g.tagged(th.sym(level), &word)),
            th.level_strong(level),
        ),
        (sep, th.dim()),
        (
            Cow::Owned(format!("{lost}daemons {live}/{total} live")),
            daemons_style,
        ),
    ]);
    left
}

/// Draws the reasons line; a runbook in progress (from the journal) comes first.
pub fn reasons(app: &App, buf: &mut Buffer, r: Rect, th: Theme) {
    if let Some(e) = app.runbooks.in_progress() {
        let text = crate::text::runbook::banner(e);
        let avail = usize::from(r.width).saturating_sub(3);
        spans(
            buf,
            r.x,
            r.y,
            r.width,
            &[
                (
                    Cow::Owned(format!(" {} ", th.g.warning)),
                    th.level_strong(Level::Warning),
                ),
                (th.fit(&text, avail), th.level_strong(Level::Warning)),
            ],
            th,
        );
        return;
    }
    let h = app.health();
    if h.reasons.is_empty() {
        spans(
            buf,
            r.x,
            r.y,
            r.width,
            &[
                (Cow::Owned(format!(" {} ", th.g.ok)), th.level(Level::Ok)),
                (
                    Cow::Borrowed("all tiers within thresholds, all daemons reachable"),
                    Style::new(),
                ),
            ],
            th,
        );
        return;
    }
    let lvl = h.state().level();
    let more = if h.reasons.len() > 1 {
        format!("  (+{} more: :expiring, :daemons)", h.reasons.len() - 1)
    } else {
        String::new()
    };
    let first = &h.reasons[0];
    let avail = usize::from(r.width).saturating_sub(3 + width(&more));
    spans(
        buf,
        r.x,
        r.y,
        r.width,
        &[
            (
                Cow::Owned(format!(" {} ", th.sym(lvl))),
                th.level_strong(lvl),
            ),
            (th.fit(first, avail), th.level(lvl)),
            (Cow::Owned(more), th.dim()),
        ],
        th,
    );
}
