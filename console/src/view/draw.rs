//! Writing text into the frame's buffer: one cell of a table, a line of styled pieces, a
//! pane's title bar. Text that does not fit is cut with the theme's ellipsis.

use std::borrow::Cow;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::theme::Theme;
use crate::text::width;

/// Pieces of one line, each with its style.
pub type Parts = Vec<(Cow<'static, str>, Style)>;

/// Where text sits in its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Writes `text` in `w` columns at (x, y); returns the x after the cell and one gap (or `x`
/// for a hidden cell of width 0).
#[allow(clippy::too_many_arguments)]
pub fn cell(
    buf: &mut Buffer,
    x: u16,
    y: u16,
    w: u16,
    text: &str,
    style: Style,
    align: Align,
    th: Theme,
) -> u16 {
    if w == 0 {
        return x;
    }
    let t = th.fit(text, usize::from(w));
    let tw = width(&t) as u16;
    let dx = if align == Align::Right { w - tw } else { 0 };
    buf.set_stringn(x + dx, y, &t, usize::from(w - dx), style);
    x + w + 1
}

/// Writes pieces left to right within `w` columns from x.
pub fn spans(buf: &mut Buffer, x: u16, y: u16, w: u16, parts: &[(Cow<'_, str>, Style)], th: Theme) {
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
        let ell = th.fit(th.g.ellipsis, usize::from(w));
        let mut left = usize::from(w).saturating_sub(width(&ell));
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
        buf.set_stringn(cx, y, &ell, width(&ell), Style::new());
    }
}

/// A pane's top line: `─ title ── … ── right ─`.
pub fn title_bar(
    buf: &mut Buffer,
    r: Rect,
    title: &[(Cow<'_, str>, Style)],
    right: &str,
    th: Theme,
) {
    if r.height == 0 {
        return;
    }
    let line = th.g.hline.repeat(usize::from(r.width));
    buf.set_stringn(r.x, r.y, &line, usize::from(r.width), th.dim());
    let mut parts: Vec<(Cow<str>, Style)> =
        vec![(Cow::Owned(format!("{} ", th.g.hline)), th.dim())];
    parts.extend(title.iter().cloned());
    parts.push((Cow::Borrowed(" "), Style::new()));
    let tw: usize = parts.iter().map(|(t, _)| width(t)).sum();
    let total = usize::from(r.width);
    spans(buf, r.x, r.y, tw.min(total) as u16, &parts, th);
    // The right text gets what is left (at least a few columns, or nothing).
    let room = total.saturating_sub(tw + 4);
    if !right.is_empty() && room >= 8 {
        let t = th.fit(right, room);
        let rw = width(&t) + 2;
        let x = r.x + r.width - rw as u16 - 1;
        buf.set_stringn(x, r.y, format!(" {t} "), rw, th.dim());
    }
}

/// A pane's title bar with a plain title.
pub fn pane_title(buf: &mut Buffer, r: Rect, title: &'static str, right: &str, th: Theme) {
    title_bar(buf, r, &[(Cow::Borrowed(title), th.title())], right, th);
}

/// Reverses row `y` across `r`: the selection.
pub fn select_row(buf: &mut Buffer, r: Rect, y: u16) {
    buf.set_style(Rect::new(r.x, y, r.width, 1), Theme::selected());
}
