//! The help and detail overlays: a bordered frame over the screen with a scrolling document
//! (see [`text::help`](crate::text::help) and [`text::detail`](crate::text::detail)).

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::symbols;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::theme::Theme;

/// A frame of `+`, `-` and `|` for an ASCII terminal.
const ASCII_BORDER: symbols::border::Set = symbols::border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};
use crate::app::{App, Mode};
use crate::layout::{overlay_rect, wrapped_len};
use crate::text::{self, TextLine};

/// Draws the open overlay, if any.
pub fn overlay(app: &App, frame: &mut Frame, area: Rect, now: DateTime<Utc>, th: Theme) {
    match app.mode {
        Mode::Help => document(
            frame,
            area,
            " Help ",
            &text::help::lines(th.g),
            app.help_scroll,
            th,
        ),
        Mode::Detail => {
            let title = app
                .detail
                .as_ref()
                .map(|d| format!(" Detail: {} ", app.fleet.node_name(&d.node)))
                .unwrap_or_default();
            let scroll = app.detail.as_ref().map(|d| d.scroll).unwrap_or(0);
            let doc = text::detail::lines(app, now);
            document(frame, area, &title, &doc, scroll, th);
        }
        Mode::Event => {
            let scroll = app.event_detail.as_ref().map(|d| d.scroll).unwrap_or(0);
            let doc = text::event::lines(app, now);
            document(frame, area, " Event ", &doc, scroll, th);
        }
        Mode::Copy => copy_menu(app, frame, area, th),
        Mode::Runbooks => {
            let doc = text::runbook::list(app);
            document(frame, area, " Runbooks ", &doc, list_scroll(app, area), th);
        }
        Mode::Runbook => runbook_pane(app, frame, area, now, th),
        Mode::Confirm => {
            // The dialog sits over the pane it came from.
            if app.runbooks.run.is_some() && app.runbooks.back == Mode::Runbook {
                runbook_pane(app, frame, area, now, th);
            }
            let doc = text::runbook::confirm(app);
            let r = confirm_rect(area, doc.len());
            framed(frame, r, " Confirm ", &doc, 0, th);
        }
        _ => {}
    }
}

fn runbook_pane(app: &App, frame: &mut Frame, area: Rect, now: DateTime<Utc>, th: Theme) {
    let title = app
        .runbooks
        .run
        .as_ref()
        .map(text::runbook::pane_title)
        .unwrap_or_default();
    let doc = text::runbook::pane(app, now);
    document(frame, area, &title, &doc, app.runbooks.scroll, th);
}

/// The list scrolled so that the selected runbook (3 lines each, after 2) stays in view.
fn list_scroll(app: &App, area: Rect) -> u16 {
    let page = usize::from(overlay_rect(area).height.saturating_sub(2));
    let bottom = 2 + 3 * (app.runbooks.cursor + 1);
    u16::try_from(bottom.saturating_sub(page)).unwrap_or(0)
}

/// A dialog of `lines` lines, centred, at most 100 wide.
fn confirm_rect(area: Rect, lines: usize) -> Rect {
    let w = area.width.saturating_sub(4).min(100);
    let h = (u16::try_from(lines).unwrap_or(u16::MAX) + 4).min(area.height.saturating_sub(2));
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// A framed document from line `scroll` on, with its position when it does not fit.
fn document(frame: &mut Frame, area: Rect, title: &str, doc: &[TextLine], scroll: u16, th: Theme) {
    framed(frame, overlay_rect(area), title, doc, scroll, th);
}

/// [`document`] in the frame `r`.
fn framed(frame: &mut Frame, r: Rect, title: &str, doc: &[TextLine], scroll: u16, th: Theme) {
    let page = usize::from(r.height.saturating_sub(2));
    let total = wrapped_len(doc, r.width.saturating_sub(2));
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
        .border_set(if th.g.box_drawing {
            symbols::border::PLAIN
        } else {
            ASCII_BORDER
        })
        .border_style(th.dim())
        .title(Line::styled(title.to_string(), th.title()))
        .title_bottom(Line::styled(pos, th.dim()).right_aligned());
    let lines: Vec<Line<'static>> = doc.iter().map(|l| th.line(l)).collect();
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll as u16, 0)),
        r,
    );
}

/// The copy menu: one line per item (what, then the text, cut to fit), the selected one
/// reversed, over the bottom of the screen.
fn copy_menu(app: &App, frame: &mut Frame, area: Rect, th: Theme) {
    let Some(m) = &app.copy_menu else { return };
    let w = area.width.saturating_sub(4).min(100);
    let h = (m.items.len() as u16 + 2).min(area.height.saturating_sub(2));
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + area.height.saturating_sub(h + 1),
        w,
        h,
    );
    let inner = usize::from(w.saturating_sub(2));
    let lines: Vec<Line<'static>> = m
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let text = format!(" {:<12} {}", it.what, it.text);
            let text = th.fit(&text, inner).into_owned();
            let line = Line::styled(format!("{text:<inner$}"), ratatui::style::Style::new());
            if i == m.cursor {
                line.style(Theme::selected())
            } else {
                line
            }
        })
        .collect();
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(th.dim())
        .title(Line::styled(" Copy to the clipboard ", th.title()));
    frame.render_widget(Clear, r);
    frame.render_widget(Paragraph::new(lines).block(block), r);
}
