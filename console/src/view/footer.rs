//! The bottom line: the key hints of the current mode and view (from the key map), the typed
//! filter or command with its matches, or a message until the next key.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use super::theme::Theme;
use crate::app::{App, Mode, keymap};
use crate::text::width;

/// `keys hint` for every binding of `mode` that has a hint, each hint once.
fn hints(app: &App, mode: Mode) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for b in keymap(mode, app.view) {
        // A key bound earlier in the lookup order shadows this binding.
        let shadowed = keys.contains(&b.keys);
        keys.push(b.keys);
        if b.hint.is_empty() || seen.contains(&b.hint) || shadowed {
            continue;
        }
        seen.push(b.hint);
        out.push(format!("{} {}", app.charset.glyphs().keys(b.keys), b.hint));
    }
    out.join("  ")
}

/// Draws the footer; returns where the text cursor goes (while typing).
pub fn footer(app: &App, buf: &mut Buffer, r: Rect, th: Theme) -> Option<(u16, u16)> {
    match app.mode {
        Mode::Filter | Mode::Command => Some(input(app, buf, r, th)),
        mode => {
            hints_line(app, mode, buf, r, th);
            None
        }
    }
}

/// The line being typed on the left (its end kept in view), matches and hints on the right.
fn input(app: &App, buf: &mut Buffer, r: Rect, th: Theme) -> (u16, u16) {
    let (prompt, text, right) = if app.mode == Mode::Filter {
        let right = match app.filter_parsed() {
            Err(e) => format!("{} {e}", th.g.critical),
            Ok(_) => format!("{} shown   {}", app.len(app.view), hints(app, app.mode)),
        };
        ("/", app.filter.as_str(), right)
    } else {
        let m: Vec<&str> = app.command_matches().iter().map(|c| c.names[0]).collect();
        let right = if m.is_empty() {
            format!("no such command   {}", hints(app, app.mode))
        } else {
            format!("{}   {}", m.join(" "), hints(app, app.mode))
        };
        (":", app.command.as_str(), right)
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
    let rt = th.fit(&right, rw);
    let rx = r.x + r.width - width(&rt) as u16;
    buf.set_stringn(rx, r.y, &rt, rw, th.dim());
    (cx, r.y)
}

/// A message (or the filter in effect), then the hints.
fn hints_line(app: &App, mode: Mode, buf: &mut Buffer, r: Rect, th: Theme) {
    let mut x = r.x;
    if let Some(s) = &app.status {
        let t = format!(" {} {} ", th.sym(s.level), s.text);
        let w = usize::from(r.width);
        let t = th.fit(&t, w);
        buf.set_stringn(x, r.y, &t, w, th.level_strong(s.level));
        x += width(&t) as u16 + 1;
    } else if !app.filter.is_empty() && mode == Mode::Normal {
        let t = format!(" /{} ", app.filter);
        let t = th.fit(&t, usize::from(r.width) / 3);
        buf.set_stringn(x, r.y, &t, usize::from(r.width), th.title());
        x += width(&t) as u16 + 1;
    }
    if x < r.x + r.width {
        let h = hints(app, mode);
        let w = usize::from(r.x + r.width - x);
        buf.set_stringn(x, r.y, format!(" {}", th.fit(&h, w - 1)), w, th.dim());
    }
}
