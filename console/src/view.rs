//! Renders the console's state. Pure: no I/O, no state changes; only the visible rows are
//! drawn (a slice of the cached rows), so a frame costs the same for 100 nodes or 100k.
//!
//! Colour follows the level (green/yellow/red) but the meaning never depends on it: every level
//! is written as a symbol and a word (`✓ ok`, `! warning`, `✗ critical`, `✗ expired`), and with
//! `color == false` (NO_COLOR) nothing is styled except the selection (reversed).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use trustdeck_proto::admin::{DaemonRole, NodeKind, Severity};
use trustdeck_topology::fleet::{DaemonConn, Level, SegmentWindow, Tree};
use trustdeck_topology::ttl::{fmt_secs, fmt_time, remaining_fraction};

use crate::app::{App, COMMANDS, Context, Mode, View, help_sections, keymap};

/// Smallest usable terminal.
pub const MIN_WIDTH: u16 = 80;
/// Smallest usable terminal.
pub const MIN_HEIGHT: u16 = 24;

/// Lines per item in the segments view.
const SEGMENT_LINES: u16 = 5;

// ---------------------------------------------------------------------------------------------
// Styles

#[derive(Clone, Copy)]
struct Theme {
    color: bool,
}

impl Theme {
    fn s(self, st: Style) -> Style {
        if self.color { st } else { Style::new() }
    }
    fn level(self, l: Level) -> Style {
        self.s(Style::new().fg(match l {
            Level::Ok => Color::Green,
            Level::Warning => Color::Yellow,
            Level::Critical => Color::Red,
        }))
    }
    fn level_strong(self, l: Level) -> Style {
        self.level(l)
            .patch(self.s(Style::new().add_modifier(Modifier::BOLD)))
    }
    /// The countdown: plain while ok, coloured once a threshold is crossed.
    fn left(self, l: Level) -> Style {
        match l {
            Level::Ok => Style::new(),
            _ => self.level(l),
        }
    }
    fn dim(self) -> Style {
        self.s(Style::new().fg(Color::DarkGray))
    }
    fn tag(self) -> Style {
        self.s(Style::new().fg(Color::Cyan))
    }
    fn title(self) -> Style {
        self.s(Style::new().add_modifier(Modifier::BOLD))
    }
    fn head(self) -> Style {
        self.s(Style::new()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::BOLD))
    }
    fn stale(self) -> Style {
        self.s(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))
    }
    fn badge(self) -> Style {
        self.s(Style::new().fg(Color::Black).bg(Color::Yellow))
    }
    /// The selection: reversed, with or without colour.
    fn selected() -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
}

// ---------------------------------------------------------------------------------------------
// Text helpers (the console's text is ASCII plus single-width symbols)

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `w` columns, with `…` when cut.
fn fit(s: &str, w: usize) -> Cow<'_, str> {
    if width(s) <= w {
        Cow::Borrowed(s)
    } else if w == 0 {
        Cow::Borrowed("")
    } else {
        let mut out: String = s.chars().take(w - 1).collect();
        out.push('…');
        Cow::Owned(out)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// Writes `text` in `w` columns at (x, y); returns the x after the cell and one gap.
fn cell(buf: &mut Buffer, x: u16, y: u16, w: u16, text: &str, style: Style, align: Align) -> u16 {
    if w == 0 {
        return x;
    }
    let t = fit(text, usize::from(w));
    let tw = width(&t) as u16;
    let dx = if align == Align::Right { w - tw } else { 0 };
    buf.set_stringn(x + dx, y, &t, usize::from(w - dx), style);
    x + w + 1
}

/// Writes spans left to right within `w` columns from x.
fn spans(buf: &mut Buffer, x: u16, y: u16, w: u16, parts: &[(Cow<'_, str>, Style)]) {
    let line = Line::from(
        parts
            .iter()
            .map(|(t, s)| Span::styled(t.as_ref(), *s))
            .collect::<Vec<_>>(),
    );
    let total: usize = parts.iter().map(|(t, _)| width(t)).sum();
    if total <= usize::from(w) {
        buf.set_line(x, y, &line, w);
    } else {
        // Cut the whole line with an ellipsis, keeping styles.
        let mut left = usize::from(w).saturating_sub(1);
        let mut cx = x;
        for (t, s) in parts {
            if left == 0 {
                break;
            }
            let piece: String = t.chars().take(left).collect();
            let pw = width(&piece);
            buf.set_stringn(cx, y, &piece, pw, *s);
            cx += pw as u16;
            left -= pw;
        }
        buf.set_stringn(cx, y, "…", 1, Style::new());
    }
}

fn level_word(l: Level, left: i64) -> &'static str {
    match l {
        Level::Critical if left <= 0 => "✗ expired",
        Level::Critical => "✗ critical",
        Level::Warning => "! warning",
        Level::Ok => "✓ ok",
    }
}

/// `07:14:03Z` when on the same (UTC) day as `now`, else `2027-10-25`.
fn short_time(secs: i64, now: DateTime<Utc>) -> String {
    match DateTime::from_timestamp(secs, 0) {
        Some(t) if t.date_naive() == now.date_naive() => t.format("%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => format!("@{secs}"),
    }
}

fn bar(frac: f64, w: usize) -> String {
    let full = ((frac * w as f64).round() as usize).min(w);
    let mut s = "█".repeat(full);
    s.push_str(&"░".repeat(w - full));
    s
}

fn kind_tag(tree: &Tree, i: usize) -> &'static str {
    let t = &tree.nodes[i];
    match NodeKind::try_from(t.node.kind).unwrap_or(NodeKind::Unspecified) {
        NodeKind::Server => "SRV",
        NodeKind::X509Authority => match t.parent {
            Some(p) if tree.nodes[p].parent.is_none() => "ROOT",
            Some(_) => "INT",
            None => "CA",
        },
        NodeKind::JwtAuthority => "JWT",
        NodeKind::Agent => "AGT",
        NodeKind::WorkloadSvid => "SVID",
        NodeKind::Unspecified => "?",
    }
}

fn kind_name(k: i32) -> &'static str {
    match NodeKind::try_from(k).unwrap_or(NodeKind::Unspecified) {
        NodeKind::Server => "server",
        NodeKind::X509Authority => "X.509 authority",
        NodeKind::JwtAuthority => "JWT authority",
        NodeKind::Agent => "agent",
        NodeKind::WorkloadSvid => "workload SVID",
        NodeKind::Unspecified => "unknown",
    }
}

/// `STALE 40s` when daemon `d` is not live.
fn stale_marker(app: &App, d: usize, now: DateTime<Utc>) -> Option<String> {
    let ds = app.fleet.daemons.get(d)?;
    if ds.is_live() {
        return None;
    }
    Some(match ds.staleness(now) {
        Some(s) => format!("STALE {}", fmt_secs(s)),
        None => "STALE".to_string(),
    })
}

/// Level, seconds left and remaining fraction of tree node `i` (None: no expiry).
fn node_ttl(app: &App, i: usize, now: DateTime<Utc>) -> Option<(Level, i64, f64, bool)> {
    let t = &app.tree().nodes[i];
    if t.node.not_after <= 0 {
        return None;
    }
    let dnow = app.fleet.daemon_now(t.source, now);
    let counts = trustdeck_topology::fleet::counts_for_health(&t.node);
    Some((
        app.fleet.node_level(app.tree(), i, now, &app.thresholds),
        t.node.not_after - dnow.timestamp(),
        remaining_fraction(t.node.not_before, t.node.not_after, dnow),
        counts,
    ))
}

// ---------------------------------------------------------------------------------------------
// Layout

struct Areas {
    header: Rect,
    reasons: Rect,
    strip: Rect,
    main: Rect,
    windows: Rect,
    soonest: Rect,
    events: Rect,
    footer: Rect,
}

fn is_large(area: Rect) -> bool {
    area.width >= 120 && area.height >= 40
}

fn rows_of(area: Rect, y: u16, h: u16) -> Rect {
    Rect::new(area.x, y, area.width, h)
}

fn window_lines(w: &SegmentWindow) -> u16 {
    if w.is_downstream() { 4 } else { 3 }
}

fn areas(app: &App, view: View, area: Rect) -> Areas {
    let h = area.height;
    let header = rows_of(area, area.y, 1);
    let reasons = rows_of(area, area.y + 1, 1);
    let footer = rows_of(area, area.y + h - 1, 1);
    let body_y = area.y + 2;
    let body_h = h.saturating_sub(3);
    let zero = Rect::new(area.x, body_y, 0, 0);
    if is_large(area) {
        let wins: u16 = app.windows().iter().map(window_lines).sum();
        let bottom_h = (1 + wins).clamp(6, 16);
        let events_h = 8;
        let main_h = body_h.saturating_sub(bottom_h + events_h);
        let main = rows_of(area, body_y, main_h);
        let by = body_y + main_h;
        let left_w = area.width * 3 / 5;
        Areas {
            header,
            reasons,
            strip: zero,
            main,
            windows: Rect::new(area.x, by, left_w, bottom_h),
            soonest: Rect::new(area.x + left_w + 1, by, area.width - left_w - 1, bottom_h),
            events: rows_of(area, by + bottom_h, events_h),
            footer,
        }
    } else {
        let n = app.windows().len() as u16;
        let strip_h = if view == View::Segments || n == 0 {
            0
        } else {
            2 + n.min(4)
        };
        Areas {
            header,
            reasons,
            strip: rows_of(area, body_y, strip_h),
            main: rows_of(area, body_y + strip_h, body_h - strip_h),
            windows: zero,
            soonest: zero,
            events: zero,
            footer,
        }
    }
}

/// Screen lines per item of `view`.
pub fn item_height(view: View) -> u16 {
    if view == View::Segments {
        SEGMENT_LINES
    } else {
        1
    }
}

/// Where the rows of `view` are drawn on a terminal of `area` (below the title bar and the
/// column header). `update` uses it for page sizes and mouse clicks.
pub fn list_area(app: &App, view: View, area: Rect) -> Rect {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return Rect::new(0, 0, 0, 0);
    }
    let m = areas(app, view, area).main;
    let skip = if view == View::Segments { 1 } else { 2 };
    Rect::new(m.x, m.y + skip, m.width, m.height.saturating_sub(skip))
}

fn overlay_rect(area: Rect) -> Rect {
    let w = if area.width < 120 {
        area.width
    } else {
        area.width.saturating_sub(8).min(110)
    };
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + 1,
        w,
        area.height.saturating_sub(2),
    )
}

/// Screen lines taken by `lines` wrapped at `w` columns.
fn wrapped_len(lines: &[Line<'_>], w: u16) -> usize {
    let w = usize::from(w).max(1);
    lines
        .iter()
        .map(|l| {
            let n: usize = l.spans.iter().map(|s| width(&s.content)).sum();
            n.div_ceil(w).max(1)
        })
        .sum()
}

/// Lines of the help or detail overlay visible at once on a terminal of `area`.
pub fn overlay_page(area: Rect) -> usize {
    usize::from(overlay_rect(area).height.saturating_sub(2)).max(1)
}

/// Lines in the open overlay (help or detail).
pub fn overlay_len(app: &App) -> usize {
    let (w, h) = app.size;
    let inner = overlay_rect(Rect::new(0, 0, w, h)).width.saturating_sub(2);
    let plain = Theme { color: false };
    match app.mode {
        Mode::Help => wrapped_len(&help_lines(plain), inner),
        Mode::Detail => wrapped_len(&detail_lines(app, DateTime::UNIX_EPOCH, plain), inner),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Render

/// Draws the whole console.
pub fn render(app: &App, frame: &mut Frame, now: DateTime<Utc>, color: bool) {
    let area = frame.area();
    let th = Theme { color };
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small: need at least {MIN_WIDTH}×{MIN_HEIGHT}, have {}×{}",
            area.width, area.height
        );
        let y = area.y + area.height / 2;
        let lines = vec![
            Line::styled(msg, th.level_strong(Level::Warning)),
            Line::raw("resize the window, or press q to quit"),
        ];
        let r = Rect::new(area.x, y.saturating_sub(2), area.width, 4.min(area.height));
        frame.render_widget(
            Paragraph::new(lines)
                .alignment(ratatui::layout::Alignment::Center)
                .wrap(ratatui::widgets::Wrap { trim: true }),
            r,
        );
        return;
    }
    let a = areas(app, app.view, area);
    let buf = frame.buffer_mut();
    header(app, buf, a.header, now, th);
    reasons(app, buf, a.reasons, th);
    if a.strip.height > 0 {
        strip(app, buf, a.strip, now, th);
    }
    main_view(app, buf, a.main, now, th);
    if a.windows.height > 0 {
        windows_pane(app, buf, a.windows, now, th);
        soonest_pane(app, buf, a.soonest, now, th);
    }
    if a.events.height > 0 {
        title_bar(
            buf,
            a.events,
            &[(Cow::Borrowed("events"), th.title())],
            "newest first",
            th,
        );
        let rows = Rect::new(
            a.events.x,
            a.events.y + 1,
            a.events.width,
            a.events.height - 1,
        );
        events_rows(app, buf, rows, 0, None, now, th);
    }
    let cursor = footer(app, buf, a.footer, th);
    match app.mode {
        Mode::Help => overlay(frame, area, " Help ", help_lines(th), app.help_scroll, th),
        Mode::Detail => {
            let title = app
                .detail
                .as_ref()
                .map(|d| format!(" Detail: {} ", d.node.label))
                .unwrap_or_default();
            let scroll = app.detail.as_ref().map(|d| d.scroll).unwrap_or(0);
            overlay(frame, area, &title, detail_lines(app, now, th), scroll, th);
        }
        _ => {}
    }
    if let Some((x, y)) = cursor {
        frame.set_cursor_position((x, y));
    }
}

fn header(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    let h = app.health();
    // A daemon the console cannot see makes "healthy" unknowable: say so (exit code 3).
    let (level, word) = match h.level {
        Level::Ok if !h.unreachable.is_empty() => (Level::Critical, "PARTIAL VIEW"),
        Level::Ok => (Level::Ok, "HEALTHY"),
        Level::Warning => (Level::Warning, "WARNING"),
        Level::Critical => (Level::Critical, "CRITICAL"),
    };
    let live = app.fleet.daemons.iter().filter(|d| d.is_live()).count();
    let total = app.fleet.daemons.len();
    let daemons_style = if live < total {
        th.level_strong(Level::Critical)
    } else {
        Style::new()
    };
    let narrow = r.width < 100;
    let mut left: Vec<(Cow<str>, Style)> = Vec::new();
    if !narrow {
        left.push((Cow::Borrowed(" trustdeck "), th.title()));
        left.push((Cow::Borrowed("│"), th.dim()));
    }
    left.extend([
        (Cow::Borrowed(" "), Style::new()),
        (
            Cow::Owned(
                app.trust_domain()
                    .unwrap_or("(trust domain unknown)")
                    .to_string(),
            ),
            Style::new(),
        ),
        (Cow::Borrowed(" │ "), th.dim()),
        (
            Cow::Owned(format!("{} {word}", level.symbol())),
            th.level_strong(level),
        ),
        (Cow::Borrowed(" │ "), th.dim()),
        (
            Cow::Owned(format!(
                "{}daemons {live}/{total} live",
                if live < total { "✗ " } else { "" }
            )),
            daemons_style,
        ),
    ]);
    let clock = if narrow {
        now.format("%H:%M:%SZ").to_string()
    } else {
        fmt_time(now.timestamp())
    };
    let right_w = width(&clock) + 2 + if app.read_only { 11 } else { 0 };
    let left_w = usize::from(r.width).saturating_sub(right_w + 1);
    if app.mouse && !narrow {
        left.push((Cow::Borrowed(" │ mouse on"), th.dim()));
    }
    spans(buf, r.x, r.y, left_w as u16, &left);
    let mut x = r.x + r.width - right_w as u16;
    buf.set_stringn(x, r.y, &clock, clock.len(), Style::new());
    x += width(&clock) as u16 + 2;
    if app.read_only {
        buf.set_stringn(x, r.y, " READ-ONLY ", 11, th.badge());
    }
}

fn reasons(app: &App, buf: &mut Buffer, r: Rect, th: Theme) {
    let h = app.health();
    if h.reasons.is_empty() {
        spans(
            buf,
            r.x,
            r.y,
            r.width,
            &[
                (Cow::Borrowed(" ✓ "), th.level(Level::Ok)),
                (
                    Cow::Borrowed("all tiers within thresholds, all daemons reachable"),
                    Style::new(),
                ),
            ],
        );
        return;
    }
    let lvl = if h.unreachable.is_empty() {
        h.level
    } else {
        Level::Critical
    };
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
                Cow::Owned(format!(" {} ", lvl.symbol())),
                th.level_strong(lvl),
            ),
            (fit(first, avail), th.level(lvl)),
            (Cow::Owned(more), th.dim()),
        ],
    );
}

/// A pane's top line: `─ title ── … ── right ─`.
fn title_bar(buf: &mut Buffer, r: Rect, title: &[(Cow<'_, str>, Style)], right: &str, th: Theme) {
    if r.height == 0 {
        return;
    }
    let line = "─".repeat(usize::from(r.width));
    buf.set_stringn(r.x, r.y, &line, usize::from(r.width), th.dim());
    let mut parts: Vec<(Cow<str>, Style)> = vec![(Cow::Borrowed("─ "), th.dim())];
    parts.extend(title.iter().cloned());
    parts.push((Cow::Borrowed(" "), Style::new()));
    let tw: usize = parts.iter().map(|(t, _)| width(t)).sum();
    let total = usize::from(r.width);
    spans(buf, r.x, r.y, tw.min(total) as u16, &parts);
    // The right text gets what is left (at least a few columns, or nothing).
    let room = total.saturating_sub(tw + 4);
    if !right.is_empty() && room >= 8 {
        let t = fit(right, room);
        let rw = width(&t) + 2;
        let x = r.x + r.width - rw as u16 - 1;
        buf.set_stringn(x, r.y, format!(" {t} "), rw, th.dim());
    }
}

fn view_tabs(app: &App, th: Theme) -> Vec<(Cow<'static, str>, Style)> {
    let mut v = Vec::new();
    for (i, view) in View::ALL.iter().enumerate() {
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

fn main_view(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    let v = app.view;
    let len = app.len(v);
    let mut info = match v {
        View::Tree => format!("{} nodes", app.tree().nodes.len()),
        View::Expiring => format!("{len} soonest first"),
        View::Segments => format!("{len} segments"),
        View::Events => format!("{len} newest first"),
        View::Daemons => format!("{len} daemons"),
    };
    if !app.filter.is_empty() && matches!(v, View::Tree | View::Expiring | View::Events) {
        info = format!("{len} match \"{}\" · {info}", app.filter);
    }
    if len > 0 {
        info.push_str(&format!(" · {}/{len}", app.cursor(v) + 1));
    }
    title_bar(buf, r, &view_tabs(app, th), &info, th);
    let list = Rect::new(
        r.x,
        r.y + if v == View::Segments { 1 } else { 2 },
        r.width,
        r.height
            .saturating_sub(if v == View::Segments { 1 } else { 2 }),
    );
    let head = Rect::new(r.x, r.y + 1, r.width, 1);
    // Keep the cursor visible even if the stored offset is stale (e.g. right after a resize).
    let per = usize::from(item_height(v));
    let page = (usize::from(list.height) / per).max(1);
    let cur = app.cursor(v);
    let mut off = app.offset(v);
    if cur < off {
        off = cur;
    } else if cur >= off + page {
        off = cur + 1 - page;
    }
    let sel = (len > 0).then_some(cur);
    if len == 0 {
        let msg = if !app.filter.is_empty() {
            format!("nothing matches \"{}\" (esc clears the filter)", app.filter)
        } else if app.fleet.daemons.iter().any(|d| d.is_live()) {
            "nothing to show".to_string()
        } else {
            "waiting for the daemons' streams… (:daemons shows the connections)".to_string()
        };
        if v != View::Segments {
            tree_or_list_header(app, buf, head, th);
        }
        buf.set_stringn(
            list.x + 1,
            list.y,
            fit(&msg, usize::from(list.width) - 1),
            usize::from(list.width),
            th.dim(),
        );
        return;
    }
    match v {
        View::Tree => {
            let cols = TreeCols::new(r.width);
            cols.header(buf, head, th);
            let rows = app.rows();
            let end = (off + page).min(rows.len());
            for (k, ri) in (off..end).enumerate() {
                let y = list.y + k as u16;
                tree_row(app, &cols, buf, r.x, y, rows[ri], now, th);
                if sel == Some(ri) {
                    buf.set_style(Rect::new(r.x, y, r.width, 1), Theme::selected());
                }
            }
        }
        View::Expiring => {
            let cols = ExpCols::new(r.width);
            cols.header(buf, head, th);
            let list_ids = app.expiring();
            let end = (off + page).min(list_ids.len());
            for (k, ei) in (off..end).enumerate() {
                let y = list.y + k as u16;
                exp_row(app, &cols, buf, r.x, y, list_ids[ei], now, th);
                if sel == Some(ei) {
                    buf.set_style(Rect::new(r.x, y, r.width, 1), Theme::selected());
                }
            }
        }
        View::Segments => {
            let wins = app.windows();
            let end = (off + page).min(wins.len());
            for (k, wi) in (off..end).enumerate() {
                let y = list.y + k as u16 * SEGMENT_LINES;
                let lines = window_block(app, &wins[wi], now, th, r.width);
                for (j, parts) in lines.iter().enumerate() {
                    spans(buf, r.x, y + j as u16, r.width, parts);
                }
                if sel == Some(wi) {
                    buf.set_style(Rect::new(r.x, y, r.width, 1), Theme::selected());
                }
            }
        }
        View::Events => {
            events_header(buf, head, th);
            events_rows(app, buf, list, off, sel, now, th);
        }
        View::Daemons => {
            let cols = DaemonCols::new(r.width);
            cols.header(buf, head, th);
            let end = (off + page).min(app.fleet.daemons.len());
            for (k, di) in (off..end).enumerate() {
                let y = list.y + k as u16;
                daemon_row(app, &cols, buf, r.x, y, di, now, th);
                if sel == Some(di) {
                    buf.set_style(Rect::new(r.x, y, r.width, 1), Theme::selected());
                }
            }
        }
    }
}

fn tree_or_list_header(app: &App, buf: &mut Buffer, head: Rect, th: Theme) {
    match app.view {
        View::Tree => TreeCols::new(head.width).header(buf, head, th),
        View::Expiring => ExpCols::new(head.width).header(buf, head, th),
        View::Events => events_header(buf, head, th),
        View::Daemons => DaemonCols::new(head.width).header(buf, head, th),
        View::Segments => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Tree

#[derive(Clone, Copy, PartialEq)]
enum ExpiryCol {
    None,
    Short,
    Full,
}

struct TreeCols {
    name: u16,
    state: u16,
    level: u16,
    left: u16,
    bar: u16,
    expires: ExpiryCol,
    key: u16,
}

impl TreeCols {
    fn new(w: u16) -> Self {
        const NAME_MIN: i32 = 34;
        let (state, level, left) = (12u16, 10u16, 8u16);
        let mut avail = i32::from(w) - i32::from(state + level + left) - 3 - 1;
        let mut take = |cost: i32| {
            if avail - cost >= NAME_MIN {
                avail -= cost;
                true
            } else {
                false
            }
        };
        let mut expires = ExpiryCol::None;
        if take(11) {
            expires = ExpiryCol::Short;
        }
        let bar = if take(9) { 8 } else { 0 };
        if expires == ExpiryCol::Short && take(10) {
            expires = ExpiryCol::Full;
        }
        let key = if take(11) { 10 } else { 0 };
        TreeCols {
            name: avail.max(10) as u16,
            state,
            level,
            left,
            bar,
            expires,
            key,
        }
    }

    fn expires_w(&self) -> u16 {
        match self.expires {
            ExpiryCol::None => 0,
            ExpiryCol::Short => 10,
            ExpiryCol::Full => 20,
        }
    }

    fn header(&self, buf: &mut Buffer, r: Rect, th: Theme) {
        let st = th.head();
        let mut x = r.x + 1;
        x = cell(buf, x, r.y, self.name, "NAME", st, Align::Left);
        x = cell(buf, x, r.y, self.state, "STATE", st, Align::Left);
        x = cell(buf, x, r.y, self.level, "LEVEL", st, Align::Left);
        x = cell(buf, x, r.y, self.left, "LEFT", st, Align::Right);
        x = cell(buf, x, r.y, self.bar, "TTL", st, Align::Left);
        x = cell(buf, x, r.y, self.expires_w(), "EXPIRES", st, Align::Left);
        cell(buf, x, r.y, self.key, "KEY", st, Align::Left);
    }
}

#[allow(clippy::too_many_arguments)]
fn tree_row(
    app: &App,
    cols: &TreeCols,
    buf: &mut Buffer,
    x0: u16,
    y: u16,
    row: trustdeck_topology::Row,
    now: DateTime<Utc>,
    th: Theme,
) {
    let tree = app.tree();
    let t = &tree.nodes[row.idx];
    let n = &t.node;
    let indent = "  ".repeat(usize::from(row.depth));
    let marker = match (row.has_children, row.expanded) {
        (true, true) => "▾ ",
        (true, false) => "▸ ",
        _ => "  ",
    };
    let tag = kind_tag(tree, row.idx);
    let mut name: Vec<(Cow<str>, Style)> = vec![
        (Cow::Owned(indent), Style::new()),
        (Cow::Borrowed(marker), th.dim()),
        (Cow::Owned(format!("{tag:<4} ")), th.tag()),
        (Cow::Borrowed(n.label.as_str()), Style::new()),
    ];
    let used = usize::from(row.depth) * 2 + 7 + width(&n.label);
    if !n.spiffe_id.is_empty()
        && n.spiffe_id != n.label
        && usize::from(cols.name) >= used + 2 + width(&n.spiffe_id).min(24)
    {
        name.push((Cow::Borrowed("  "), Style::new()));
        name.push((Cow::Borrowed(n.spiffe_id.as_str()), th.dim()));
    }
    spans(buf, x0 + 1, y, cols.name, &name);
    let mut x = x0 + 1 + cols.name + 1;
    match stale_marker(app, t.source, now) {
        Some(s) => x = cell(buf, x, y, cols.state, &s, th.stale(), Align::Left),
        None => {
            let state = n.state_wire().as_str();
            x = cell(buf, x, y, cols.state, state, Style::new(), Align::Left)
        }
    }
    match node_ttl(app, row.idx, now) {
        Some((lvl, left, frac, counts)) => {
            let (word, lst) = if counts {
                (level_word(lvl, left), th.level(lvl))
            } else {
                ("–", th.dim())
            };
            let left_txt = if left <= 0 {
                "expired".to_string()
            } else {
                fmt_secs(left)
            };
            let left_st = if counts { th.left(lvl) } else { th.dim() };
            x = cell(buf, x, y, cols.level, word, lst, Align::Left);
            x = cell(buf, x, y, cols.left, &left_txt, left_st, Align::Right);
            x = cell(buf, x, y, cols.bar, &bar(frac, 8), lst, Align::Left);
            let exp = match cols.expires {
                ExpiryCol::Full => fmt_time(n.not_after),
                ExpiryCol::Short => short_time(n.not_after, now),
                ExpiryCol::None => String::new(),
            };
            x = cell(buf, x, y, cols.expires_w(), &exp, Style::new(), Align::Left);
        }
        None => {
            x = cell(buf, x, y, cols.level, "", Style::new(), Align::Left);
            x = cell(buf, x, y, cols.left, "—", th.dim(), Align::Right);
            x = cell(buf, x, y, cols.bar, "", Style::new(), Align::Left);
            x = cell(buf, x, y, cols.expires_w(), "", Style::new(), Align::Left);
        }
    }
    let key = n
        .key_storage
        .as_ref()
        .map(|k| k.backend_wire().as_str())
        .unwrap_or("");
    // A CA key outside an HSM breaches the key policy: say so in the row, not only in colour.
    let breach = app
        .thresholds
        .key_policy
        .then(|| trustdeck_topology::fleet::key_policy(app.fleet.daemons[t.source].role(), n))
        .flatten();
    match breach {
        Some(b) => {
            let level = b.level;
            let text = format!("{key} {}", level.symbol());
            cell(
                buf,
                x,
                y,
                cols.key,
                &text,
                th.level_strong(level),
                Align::Left,
            );
        }
        None => {
            cell(buf, x, y, cols.key, key, th.dim(), Align::Left);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Expiring

struct ExpCols {
    level: u16,
    left: u16,
    expires: u16,
    kind: u16,
    segment: u16,
    state: u16,
    name: u16,
}

impl ExpCols {
    fn new(w: u16) -> Self {
        let (level, left, kind, state) = (10u16, 8u16, 4u16, 12u16);
        let mut avail = i32::from(w) - i32::from(level + left + kind + state) - 4 - 1;
        let expires = if avail - 21 >= 40 {
            avail -= 21;
            20
        } else {
            avail -= 11;
            10
        };
        let segment = if avail - 9 >= 30 {
            avail -= 9;
            8
        } else {
            0
        };
        ExpCols {
            level,
            left,
            expires,
            kind,
            segment,
            state,
            name: avail.max(10) as u16,
        }
    }

    fn header(&self, buf: &mut Buffer, r: Rect, th: Theme) {
        let st = th.head();
        let mut x = r.x + 1;
        x = cell(buf, x, r.y, self.level, "LEVEL", st, Align::Left);
        x = cell(buf, x, r.y, self.left, "LEFT", st, Align::Right);
        x = cell(buf, x, r.y, self.expires, "EXPIRES", st, Align::Left);
        x = cell(buf, x, r.y, self.kind, "KIND", st, Align::Left);
        x = cell(buf, x, r.y, self.segment, "SEGMENT", st, Align::Left);
        x = cell(buf, x, r.y, self.state, "STATE", st, Align::Left);
        cell(buf, x, r.y, self.name, "NAME", st, Align::Left);
    }
}

#[allow(clippy::too_many_arguments)]
fn exp_row(
    app: &App,
    cols: &ExpCols,
    buf: &mut Buffer,
    x0: u16,
    y: u16,
    i: usize,
    now: DateTime<Utc>,
    th: Theme,
) {
    let tree = app.tree();
    let t = &tree.nodes[i];
    let n = &t.node;
    let mut x = x0 + 1;
    let (lvl, left) = match node_ttl(app, i, now) {
        Some((l, left, _, _)) => (l, left),
        None => (Level::Ok, 0),
    };
    x = cell(
        buf,
        x,
        y,
        cols.level,
        level_word(lvl, left),
        th.level(lvl),
        Align::Left,
    );
    let left_txt = if left <= 0 {
        "expired".to_string()
    } else {
        fmt_secs(left)
    };
    x = cell(buf, x, y, cols.left, &left_txt, th.left(lvl), Align::Right);
    let exp = if cols.expires >= 20 {
        fmt_time(n.not_after)
    } else {
        short_time(n.not_after, now)
    };
    x = cell(buf, x, y, cols.expires, &exp, Style::new(), Align::Left);
    x = cell(
        buf,
        x,
        y,
        cols.kind,
        kind_tag(tree, i),
        th.tag(),
        Align::Left,
    );
    x = cell(
        buf,
        x,
        y,
        cols.segment,
        &n.segment,
        Style::new(),
        Align::Left,
    );
    x = match stale_marker(app, t.source, now) {
        Some(s) => cell(buf, x, y, cols.state, &s, th.stale(), Align::Left),
        None => {
            let state = n.state_wire().as_str();
            cell(buf, x, y, cols.state, state, Style::new(), Align::Left)
        }
    };
    cell(
        buf,
        x,
        y,
        cols.name,
        short_name(app, n),
        Style::new(),
        Align::Left,
    );
}

fn soonest_pane(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    title_bar(
        buf,
        r,
        &[(Cow::Borrowed("expires next"), th.title())],
        "fleet-wide",
        th,
    );
    let tree = app.tree();
    let ids = app.expiring();
    for (k, &i) in ids.iter().take(usize::from(r.height - 1)).enumerate() {
        let y = r.y + 1 + k as u16;
        let n = &tree.nodes[i].node;
        let (lvl, left) = match node_ttl(app, i, now) {
            Some((l, left, _, _)) => (l, left),
            None => (Level::Ok, 0),
        };
        let mut x = r.x + 1;
        x = cell(
            buf,
            x,
            y,
            10,
            level_word(lvl, left),
            th.level(lvl),
            Align::Left,
        );
        let left_txt = if left <= 0 {
            "expired".to_string()
        } else {
            fmt_secs(left)
        };
        x = cell(buf, x, y, 8, &left_txt, th.left(lvl), Align::Right);
        x = cell(
            buf,
            x,
            y,
            9,
            &short_time(n.not_after, now),
            Style::new(),
            Align::Left,
        );
        x = cell(buf, x, y, 4, kind_tag(tree, i), th.tag(), Align::Left);
        let w = (r.x + r.width).saturating_sub(x + 1);
        let mut text = short_name(app, n).to_string();
        if let Some(s) = stale_marker(app, tree.nodes[i].source, now) {
            text = format!("{s} {text}");
        }
        cell(buf, x, y, w, &text, Style::new(), Align::Left);
    }
    if ids.is_empty() {
        buf.set_stringn(r.x + 1, r.y + 1, "nothing expires", 20, th.dim());
    }
}

// ---------------------------------------------------------------------------------------------
// Segments

#[derive(Clone, Copy, PartialEq)]
enum UpFmt {
    /// `✓ connected since 2026-11-24 04:12:03Z (3h 00m)`
    Full,
    /// `✓ connected for 3h 00m`
    Compact,
    /// `✓ connected 3h 00m`
    Tiny,
}

fn upstream_parts(w: &SegmentWindow, now: DateTime<Utc>, f: UpFmt) -> (String, Level) {
    match w.upstream_state {
        None => (
            if f == UpFmt::Tiny {
                "— (root)"
            } else {
                "— none (root of trust)"
            }
            .to_string(),
            Level::Ok,
        ),
        Some(s) => {
            let lvl = trustdeck_topology::fleet::conn_level(s);
            let since = w.upstream_since.filter(|&t| t > 0).map(|t| {
                let d = fmt_secs(now.timestamp() - t);
                match f {
                    UpFmt::Full => format!(" since {} ({d})", fmt_time(t)),
                    UpFmt::Compact => format!(" for {d}"),
                    UpFmt::Tiny => format!(" {d}"),
                }
            });
            (
                format!("{} {s}{}", lvl.symbol(), since.unwrap_or_default()),
                lvl,
            )
        }
    }
}

/// A SPIFFE ID without the `spiffe://<trust domain>` prefix (shown in the header), else the
/// label.
fn short_name<'a>(app: &App, n: &'a trustdeck_proto::admin::Node) -> &'a str {
    if n.spiffe_id.is_empty() {
        return &n.label;
    }
    match app.trust_domain() {
        Some(td) => n
            .spiffe_id
            .strip_prefix("spiffe://")
            .and_then(|r| r.strip_prefix(td))
            .filter(|p| p.starts_with('/'))
            .unwrap_or(&n.spiffe_id),
        None => &n.spiffe_id,
    }
}

type Parts = Vec<(Cow<'static, str>, Style)>;

/// The sentence per segment: what happens if its upstream, or its server, is lost now.
fn window_sentences(
    w: &SegmentWindow,
    now: DateTime<Utc>,
    th: Theme,
    full: bool,
) -> (Parts, Parts) {
    let t = |s: i64| {
        if full {
            fmt_time(s)
        } else {
            short_time(s, now)
        }
    };
    let nows = now.timestamp();
    let up_lost = w
        .upstream_state
        .is_some_and(|s| trustdeck_topology::fleet::conn_level(s) == Level::Critical);
    let mut up: Parts = Vec::new();
    if !w.is_downstream() {
        up.push((Cow::Borrowed("upstream lost now → "), th.dim()));
        up.push((
            Cow::Borrowed("n/a: this segment is the root of trust"),
            Style::new(),
        ));
    } else {
        up.push((
            Cow::Borrowed(if up_lost {
                "upstream LOST → "
            } else {
                "upstream lost now → "
            }),
            if up_lost {
                th.level_strong(Level::Critical)
            } else {
                th.dim()
            },
        ));
        match w.x509_until {
            Some(until) => {
                let left = until - nows;
                let lvl = if left <= 0 {
                    Level::Critical
                } else if left < 3600 {
                    Level::Warning
                } else {
                    Level::Ok
                };
                up.push((
                    Cow::Owned(format!(
                        "X.509 {}until {} (in {})",
                        if full { "continues " } else { "" },
                        t(until),
                        fmt_secs(left)
                    )),
                    th.left(lvl),
                ));
            }
            None => up.push((
                Cow::Borrowed("X.509 stops now (no intermediate held)"),
                th.level(Level::Critical),
            )),
        }
        if w.jwt_stops_now {
            up.push((
                Cow::Owned(format!(
                    ", JWT {}",
                    if up_lost { "stopped" } else { "stops now" }
                )),
                if up_lost {
                    th.level(Level::Critical)
                } else {
                    Style::new()
                },
            ));
        }
    }
    let mut srv: Parts = vec![(Cow::Borrowed("server lost now → "), th.dim())];
    match w.workloads_fail_at {
        Some(at) => {
            let left = at - nows;
            let lvl = if left <= 0 {
                Level::Critical
            } else if left < 600 {
                Level::Warning
            } else {
                Level::Ok
            };
            srv.push((
                Cow::Owned(format!(
                    "workloads fail at {} (in {})",
                    t(at),
                    fmt_secs(left)
                )),
                th.left(lvl),
            ));
        }
        None => srv.push((Cow::Borrowed("no workload SVIDs below it"), Style::new())),
    }
    (up, srv)
}

fn segment_title(app: &App, w: &SegmentWindow, now: DateTime<Utc>, th: Theme) -> Parts {
    let mut p: Parts = vec![
        (Cow::Owned(w.segment.clone()), th.title()),
        (
            Cow::Owned(format!(
                " · server {}, {} · {} workload SVID{}",
                w.server,
                if w.role == DaemonRole::Upstream {
                    "root of trust"
                } else {
                    w.role.as_str()
                },
                w.workloads,
                if w.workloads == 1 { "" } else { "s" }
            )),
            th.dim(),
        ),
    ];
    let d = app.fleet.daemons.iter().position(|d| d.name == w.server);
    if let Some(s) = d.and_then(|d| stale_marker(app, d, now)) {
        p.push((Cow::Borrowed("  "), Style::new()));
        p.push((Cow::Owned(format!("{s}: as last heard")), th.stale()));
    }
    p
}

fn window_block(
    app: &App,
    w: &SegmentWindow,
    now: DateTime<Utc>,
    th: Theme,
    wd: u16,
) -> Vec<Parts> {
    let full = wd >= 100;
    let (up_line, lvl) = upstream_parts(w, now, if full { UpFmt::Full } else { UpFmt::Compact });
    let mut up_parts: Parts = vec![
        (Cow::Borrowed("   upstream       "), th.dim()),
        (Cow::Owned(up_line), th.level(lvl)),
    ];
    if let Some(e) = &w.upstream_error {
        up_parts.push((Cow::Owned(format!(": {e}")), th.level(lvl)));
    }
    let (up, srv) = window_sentences(w, now, th, full);
    let indent = |mut p: Parts| {
        p.insert(0, (Cow::Borrowed("   "), Style::new()));
        p
    };
    let mut title = vec![(Cow::Borrowed(" "), Style::new())];
    title.extend(segment_title(app, w, now, th));
    vec![title, up_parts, indent(up), indent(srv)]
}

fn windows_pane(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    title_bar(
        buf,
        r,
        &[(Cow::Borrowed("autonomous window"), th.title())],
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
            spans(buf, r.x, y, r.width, &parts);
            y += 1;
        }
    }
}

/// The compact per-segment table shown above the tree on small terminals.
fn strip(app: &App, buf: &mut Buffer, r: Rect, now: DateTime<Utc>, th: Theme) {
    title_bar(
        buf,
        r,
        &[(Cow::Borrowed("autonomous window"), th.title())],
        ":segments for detail",
        th,
    );
    let (seg_w, up_w, if_up_w) = (8u16, 20u16, 26u16);
    let hy = r.y + 1;
    let mut x = r.x + 1;
    x = cell(buf, x, hy, seg_w, "SEGMENT", th.head(), Align::Left);
    x = cell(buf, x, hy, up_w, "UPSTREAM", th.head(), Align::Left);
    x = cell(
        buf,
        x,
        hy,
        if_up_w,
        "IF UPSTREAM LOST NOW",
        th.head(),
        Align::Left,
    );
    cell(
        buf,
        x,
        hy,
        r.width.saturating_sub(x + 1),
        "IF SERVER LOST NOW",
        th.head(),
        Align::Left,
    );
    let nowsecs = now.timestamp();
    let shown = usize::from(r.height.saturating_sub(2));
    let wins = app.windows();
    for (k, w) in wins.iter().take(shown).enumerate() {
        let y = r.y + 2 + k as u16;
        let mut x = r.x + 1;
        let last_line = k + 1 == shown && wins.len() > shown;
        if last_line {
            let msg = format!("… {} more segments: :segments", wins.len() - shown + 1);
            buf.set_stringn(x, y, msg, usize::from(r.width - 2), th.dim());
            break;
        }
        x = cell(buf, x, y, seg_w, &w.segment, th.title(), Align::Left);
        // A stale daemon's upstream state is only its last word: say so instead.
        let d = app.fleet.daemons.iter().position(|d| d.name == w.server);
        x = match d.and_then(|d| stale_marker(app, d, now)) {
            Some(s) => cell(buf, x, y, up_w, &s, th.stale(), Align::Left),
            None => {
                let (up, lvl) = upstream_parts(w, now, UpFmt::Tiny);
                cell(buf, x, y, up_w, &up, th.level(lvl), Align::Left)
            }
        };
        let up_lost = w
            .upstream_state
            .is_some_and(|s| trustdeck_topology::fleet::conn_level(s) == Level::Critical);
        let if_up = if !w.is_downstream() {
            "—".to_string()
        } else {
            let x509 = match w.x509_until {
                Some(u) => format!("X.509 {}", fmt_secs(u - nowsecs)),
                None => "X.509 stops".to_string(),
            };
            format!("{x509}, JWT {}", if up_lost { "stopped" } else { "stops" })
        };
        let if_up_st = if up_lost {
            th.level(Level::Critical)
        } else {
            Style::new()
        };
        x = cell(buf, x, y, if_up_w, &if_up, if_up_st, Align::Left);
        let mut srv: Parts = Vec::new();
        match w.workloads_fail_at {
            Some(at) => {
                let left = at - nowsecs;
                let l = if left <= 0 {
                    Level::Critical
                } else if left < 600 {
                    Level::Warning
                } else {
                    Level::Ok
                };
                srv.push((
                    Cow::Owned(format!("SVIDs fail in {}", fmt_secs(left))),
                    th.left(l),
                ));
            }
            None => srv.push((Cow::Borrowed("no workload SVIDs"), th.dim())),
        }
        spans(buf, x, y, (r.x + r.width).saturating_sub(x + 1), &srv);
    }
}

// ---------------------------------------------------------------------------------------------
// Events

fn events_header(buf: &mut Buffer, r: Rect, th: Theme) {
    let st = th.head();
    let mut x = r.x + 1;
    let (tw, kw) = ev_widths(r.width);
    x = cell(buf, x, r.y, tw, "TIME", st, Align::Left);
    x = cell(buf, x, r.y, 9, "SEVERITY", st, Align::Left);
    x = cell(buf, x, r.y, 10, "DAEMON", st, Align::Left);
    x = cell(buf, x, r.y, kw, "KIND", st, Align::Left);
    cell(
        buf,
        x,
        r.y,
        r.width.saturating_sub(x + 1 - r.x),
        "MESSAGE",
        st,
        Align::Left,
    );
}

fn ev_widths(w: u16) -> (u16, u16) {
    if w >= 120 { (20, 20) } else { (10, 16) }
}

fn events_rows(
    app: &App,
    buf: &mut Buffer,
    r: Rect,
    off: usize,
    sel: Option<usize>,
    now: DateTime<Utc>,
    th: Theme,
) {
    let idx = app.events();
    let (tw, kw) = ev_widths(r.width);
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
        let time = if tw >= 20 {
            fmt_time(secs)
        } else {
            short_time(secs, now)
        };
        let (sev, lvl) = match e.severity_wire().known() {
            Some(Severity::Error) => ("✗ error", Some(Level::Critical)),
            Some(Severity::Warning) => ("! warning", Some(Level::Warning)),
            Some(Severity::Info | Severity::Unspecified) => ("· info", None),
            None => ("· unknown", None),
        };
        let sev_st = lvl.map(|l| th.level(l)).unwrap_or_else(|| th.dim());
        let mut x = r.x + 1;
        x = cell(buf, x, y, tw, &time, th.dim(), Align::Left);
        x = cell(buf, x, y, 9, sev, sev_st, Align::Left);
        x = cell(buf, x, y, 10, &fe.daemon, Style::new(), Align::Left);
        x = cell(buf, x, y, kw, e.kind_wire().as_str(), th.tag(), Align::Left);
        let mw = (r.x + r.width).saturating_sub(x + 1);
        cell(buf, x, y, mw, &e.message, Style::new(), Align::Left);
        if sel == Some(off + k) {
            buf.set_style(Rect::new(r.x, y, r.width, 1), Theme::selected());
        }
    }
    if idx.is_empty() && r.height > 0 {
        buf.set_stringn(r.x + 1, r.y, "no events yet", 20, th.dim());
    }
}

// ---------------------------------------------------------------------------------------------
// Daemons

struct DaemonCols {
    name: u16,
    role: u16,
    segment: u16,
    conn: u16,
    heard: u16,
    skew: u16,
    upstream: u16,
    rev: u16,
    rest: u16,
}

impl DaemonCols {
    fn new(w: u16) -> Self {
        let (name, role, conn, heard, skew) = (10u16, 10u16, 12u16, 11u16, 7u16);
        let mut avail = i32::from(w) - i32::from(name + role + conn + heard + skew) - 5 - 1;
        let mut take = |c: i32| {
            if avail - c >= 24 {
                avail -= c;
                true
            } else {
                false
            }
        };
        let segment = if take(9) { 8 } else { 0 };
        let upstream = if take(17) { 16 } else { 0 };
        let rev = if take(7) { 6 } else { 0 };
        DaemonCols {
            name,
            role,
            segment,
            conn,
            heard,
            skew,
            upstream,
            rev,
            rest: avail.max(8) as u16,
        }
    }

    fn header(&self, buf: &mut Buffer, r: Rect, th: Theme) {
        let st = th.head();
        let mut x = r.x + 1;
        x = cell(buf, x, r.y, self.name, "NAME", st, Align::Left);
        x = cell(buf, x, r.y, self.role, "ROLE", st, Align::Left);
        x = cell(buf, x, r.y, self.segment, "SEGMENT", st, Align::Left);
        x = cell(buf, x, r.y, self.conn, "CONSOLE LINK", st, Align::Left);
        x = cell(buf, x, r.y, self.heard, "HEARD", st, Align::Right);
        x = cell(buf, x, r.y, self.skew, "SKEW", st, Align::Right);
        x = cell(buf, x, r.y, self.upstream, "UPSTREAM", st, Align::Left);
        x = cell(buf, x, r.y, self.rev, "REV", st, Align::Right);
        cell(buf, x, r.y, self.rest, "ERROR / ENDPOINT", st, Align::Left);
    }
}

#[allow(clippy::too_many_arguments)]
fn daemon_row(
    app: &App,
    cols: &DaemonCols,
    buf: &mut Buffer,
    x0: u16,
    y: u16,
    d: usize,
    now: DateTime<Utc>,
    th: Theme,
) {
    let ds = &app.fleet.daemons[d];
    let mut x = x0 + 1;
    x = cell(buf, x, y, cols.name, &ds.name, th.title(), Align::Left);
    x = cell(
        buf,
        x,
        y,
        cols.role,
        ds.role().as_str(),
        Style::new(),
        Align::Left,
    );
    x = cell(
        buf,
        x,
        y,
        cols.segment,
        ds.segment(),
        Style::new(),
        Align::Left,
    );
    let (conn, lvl, err) = match &ds.conn {
        DaemonConn::Live => ("✓ live".to_string(), Level::Ok, None),
        DaemonConn::Connecting => ("… connecting".to_string(), Level::Warning, None),
        DaemonConn::Lost { since, error } => (
            format!("✗ lost {}", fmt_secs((now - *since).num_seconds().max(0))),
            Level::Critical,
            Some(error.as_str()),
        ),
    };
    x = cell(buf, x, y, cols.conn, &conn, th.level(lvl), Align::Left);
    let heard = match ds.last_heard {
        Some(t) => format!("{} ago", fmt_secs((now - t).num_seconds().max(0))),
        None => "never".to_string(),
    };
    x = cell(buf, x, y, cols.heard, &heard, Style::new(), Align::Right);
    let skew_lvl = if ds.skew_ms.abs() > 5_000 {
        Level::Warning
    } else {
        Level::Ok
    };
    let skew = format!("{:+.1}s", ds.skew_ms as f64 / 1000.0);
    x = cell(buf, x, y, cols.skew, &skew, th.left(skew_lvl), Align::Right);
    if cols.upstream > 0 {
        let (up, ul) = match &ds.upstream {
            None => ("—".to_string(), None),
            Some(u) => {
                let state = u.state_wire();
                let l = trustdeck_topology::fleet::conn_level(state);
                (format!("{} {state}", l.symbol()), Some(l))
            }
        };
        let st = ul.map(|l| th.level(l)).unwrap_or_else(|| th.dim());
        x = cell(buf, x, y, cols.upstream, &up, st, Align::Left);
    }
    x = cell(
        buf,
        x,
        y,
        cols.rev,
        &ds.revision.to_string(),
        th.dim(),
        Align::Right,
    );
    match err {
        Some(e) => cell(
            buf,
            x,
            y,
            cols.rest,
            e,
            th.level(Level::Critical),
            Align::Left,
        ),
        None => cell(buf, x, y, cols.rest, &ds.endpoint, th.dim(), Align::Left),
    };
}

// ---------------------------------------------------------------------------------------------
// Footer

/// Draws the footer; returns where the text cursor goes (while typing).
fn footer(app: &App, buf: &mut Buffer, r: Rect, th: Theme) -> Option<(u16, u16)> {
    let hints = |mode: Mode| -> String {
        let mut seen: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for b in keymap(mode, app.view) {
            if b.hint.is_empty() || seen.contains(&b.hint) {
                continue;
            }
            seen.push(b.hint);
            out.push(format!("{} {}", b.keys, b.hint));
        }
        out.join("  ")
    };
    match app.mode {
        Mode::Filter | Mode::Command => {
            let (prompt, text) = if app.mode == Mode::Filter {
                ("/", app.filter.as_str())
            } else {
                (":", app.command.as_str())
            };
            let right = if app.mode == Mode::Command {
                let m: Vec<String> = app
                    .command_matches()
                    .iter()
                    .map(|c| c.names[0].to_string())
                    .collect();
                if m.is_empty() {
                    format!("no such command   {}", hints(app.mode))
                } else {
                    format!("{}   {}", m.join(" "), hints(app.mode))
                }
            } else {
                format!("{} shown   {}", app.len(app.view), hints(app.mode))
            };
            let input_w = usize::from(r.width) / 2;
            let shown = {
                let t = format!("{prompt}{text}");
                let n = width(&t);
                if n + 1 > input_w {
                    t.chars().skip(n + 1 - input_w).collect()
                } else {
                    t
                }
            };
            buf.set_stringn(r.x, r.y, &shown, input_w, th.title());
            let cx = r.x + width(&shown) as u16;
            let rw = usize::from(r.width) - input_w - 1;
            let rt = fit(&right, rw);
            let rx = r.x + r.width - width(&rt) as u16;
            buf.set_stringn(rx, r.y, &rt, rw, th.dim());
            Some((cx, r.y))
        }
        mode => {
            let mut x = r.x;
            if let Some(s) = &app.status {
                let t = format!(" {} {} ", s.level.symbol(), s.text);
                let w = usize::from(r.width);
                let t = fit(&t, w);
                buf.set_stringn(x, r.y, &t, w, th.level_strong(s.level));
                x += width(&t) as u16 + 1;
            } else if !app.filter.is_empty() && mode == Mode::Normal {
                let t = format!(" /{} ", app.filter);
                let t = fit(&t, usize::from(r.width) / 3);
                buf.set_stringn(x, r.y, &t, usize::from(r.width), th.title());
                x += width(&t) as u16 + 1;
            }
            if x < r.x + r.width {
                let h = hints(mode);
                let w = usize::from(r.x + r.width - x);
                buf.set_stringn(x, r.y, format!(" {}", fit(&h, w - 1)), w, th.dim());
            }
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Overlays

fn overlay(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line<'static>>,
    scroll: u16,
    th: Theme,
) {
    let r = overlay_rect(area);
    let page = usize::from(r.height.saturating_sub(2));
    let total = wrapped_len(&lines, r.width.saturating_sub(2));
    let max = total.saturating_sub(page);
    let scroll = usize::from(scroll).min(max);
    let pos = if total > page {
        format!(
            " {}-{}/{} j/k scroll ",
            scroll + 1,
            (scroll + page).min(total),
            total
        )
    } else {
        String::new()
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(th.dim())
        .title(Line::styled(title.to_string(), th.title()))
        .title_bottom(Line::styled(pos, th.dim()).right_aligned());
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .scroll((scroll as u16, 0)),
        r,
    );
}

fn help_lines(th: Theme) -> Vec<Line<'static>> {
    let mut out = vec![Line::styled(
        " trustdeck console: read-only view of the fleet's trust tree. Keys:",
        th.dim(),
    )];
    for (ctx, bindings) in help_sections() {
        if bindings.is_empty() {
            continue;
        }
        out.push(Line::raw(""));
        out.push(Line::styled(format!(" {}", ctx.title()), th.title()));
        for b in bindings {
            out.push(Line::from(vec![
                Span::styled(format!("   {:<13}", b.keys), th.tag()),
                Span::raw(b.help),
            ]));
        }
        if ctx == Context::Global {
            // nothing extra
        }
    }
    out.push(Line::raw(""));
    out.push(Line::styled(" Commands (type : then the name)", th.title()));
    for c in COMMANDS {
        let names: Vec<String> = c.names.iter().map(|n| format!(":{n}")).collect();
        out.push(Line::from(vec![
            Span::styled(format!("   {:<24}", names.join(" ")), th.tag()),
            Span::raw(c.help),
        ]));
    }
    out.push(Line::raw(""));
    out.push(Line::styled(" Reading the screen", th.title()));
    for (a, b) in [
        ("✓ ok", "within thresholds"),
        ("! warning", "below the warning fraction of its lifetime"),
        (
            "✗ critical",
            "below the critical fraction, or expired, or lost",
        ),
        ("–", "not counted (old authorities, kept for validation)"),
        (
            "STALE 40s",
            "last-known state from a daemon the console cannot reach",
        ),
        ("ROOT INT JWT", "root CA, intermediate CA, JWT authority"),
        ("SRV AGT SVID", "server, agent, workload SVID"),
    ] {
        out.push(Line::from(vec![
            Span::styled(format!("   {a:<13}"), th.tag()),
            Span::raw(b),
        ]));
    }
    out
}

fn detail_lines(app: &App, now: DateTime<Utc>, th: Theme) -> Vec<Line<'static>> {
    let Some(d) = &app.detail else {
        return Vec::new();
    };
    let n = &d.node;
    let mut out: Vec<Line<'static>> = Vec::new();
    let mut field = |name: &str, value: String, st: Style| {
        if !value.is_empty() {
            out.push(Line::from(vec![
                Span::styled(format!(" {name:<13}"), th.dim()),
                Span::styled(value, st),
            ]));
        }
    };
    let tree = app.tree();
    let idx = tree.by_id.get(&n.id).copied();
    let tag = idx.map(|i| kind_tag(tree, i)).unwrap_or("?");
    field(
        "kind",
        format!("{} ({tag})", kind_name(n.kind)),
        Style::new(),
    );
    field("label", n.label.clone(), th.title());
    field("id", n.id.clone(), Style::new());
    field("SPIFFE ID", n.spiffe_id.clone(), Style::new());
    field("subject", n.subject.clone(), Style::new());
    field("state", n.state_wire().to_string(), Style::new());
    field("segment", n.segment.clone(), Style::new());
    field("parent", n.parent.clone(), Style::new());
    if let Some(ds) = app.fleet.daemons.get(d.daemon) {
        let (txt, st) = match stale_marker(app, d.daemon, now) {
            Some(s) => (format!("{} ({s})", ds.name), th.stale()),
            None => (format!("{} (live)", ds.name), Style::new()),
        };
        field("reported by", txt, st);
    }
    if n.not_after > 0 {
        let dnow = app.fleet.daemon_now(d.daemon, now);
        let left = n.not_after - dnow.timestamp();
        let lvl = idx
            .map(|i| app.fleet.node_level(tree, i, now, &app.thresholds))
            .unwrap_or(Level::Ok);
        field("not before", fmt_time(n.not_before), Style::new());
        let when = if left <= 0 {
            format!(
                "{}  (expired {} ago)",
                fmt_time(n.not_after),
                fmt_secs(-left)
            )
        } else {
            format!("{}  (in {})", fmt_time(n.not_after), fmt_secs(left))
        };
        field("not after", when, th.left(lvl));
        let frac = remaining_fraction(n.not_before, n.not_after, dnow);
        let counts = trustdeck_topology::fleet::counts_for_health(n);
        field(
            "lifetime",
            format!(
                "{}, {:.0}% left  {}  {}",
                fmt_secs(n.not_after - n.not_before),
                frac * 100.0,
                bar(frac, 10),
                if counts {
                    level_word(lvl, left)
                } else {
                    "– not counted"
                }
            ),
            th.level(lvl),
        );
    }
    if let Some(k) = &n.key_storage {
        let v = if k.detail.is_empty() {
            k.backend_wire().to_string()
        } else {
            format!("{} ({})", k.backend_wire(), k.detail)
        };
        field("key storage", v, Style::new());
    }
    field("serial", n.serial.clone(), Style::new());
    field("issuer key id", n.issuer_key_id.clone(), Style::new());
    field("entry id", n.entry_id.clone(), Style::new());
    field("selectors", n.selectors.join(", "), Style::new());
    if let Some(i) = idx {
        let c = tree.nodes[i].children.len();
        if c > 0 {
            field("children", c.to_string(), Style::new());
        }
    }
    out.push(Line::raw(""));
    let from = app
        .fleet
        .daemons
        .get(d.daemon)
        .map(|x| x.name.clone())
        .unwrap_or_default();
    match &d.fetched {
        None => out.push(Line::styled(
            format!(" fetching the certificate detail from {from}…"),
            th.dim(),
        )),
        Some(Err(e)) => out.push(Line::styled(
            format!(" ✗ could not fetch the detail from {from}: {e}"),
            th.level(Level::Critical),
        )),
        Some(Ok(nd)) => {
            out.push(Line::styled(format!(" From {from}:"), th.title()));
            let chain = nd.chain_der.len();
            out.push(Line::from(vec![
                Span::styled(format!(" {:<13}", "chain"), th.dim()),
                Span::raw(match chain {
                    0 => "no certificate chain".to_string(),
                    1 => "1 certificate".to_string(),
                    c => format!("{c} certificates (leaf first)"),
                }),
            ]));
            for f in &nd.fields {
                let (k, v) = f.split_once(": ").unwrap_or(("", f.as_str()));
                out.push(Line::from(vec![
                    Span::styled(format!(" {k:<13}"), th.dim()),
                    Span::raw(v.to_string()),
                ]));
            }
        }
    }
    out
}
