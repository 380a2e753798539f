//! The screen of a terminal below the minimum size: what is needed and what to do.

use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use trustdeck_topology::fleet::Level;

use super::theme::Theme;
use crate::layout::{MIN_HEIGHT, MIN_WIDTH};

/// Draws the too-small message in the middle of `area`.
pub fn too_small(frame: &mut Frame, area: Rect, th: Theme) {
    let msg = format!(
        "terminal too small: need at least {MIN_WIDTH}{x}{MIN_HEIGHT}, have {}{x}{}",
        area.width,
        area.height,
        x = th.g.times
    );
    let y = area.y + area.height / 2;
    let lines = vec![
        Line::styled(msg, th.level_strong(Level::Warning)),
        Line::raw("resize the window, or press q to quit"),
    ];
    let r = Rect::new(area.x, y.saturating_sub(2), area.width, 4.min(area.height));
    frame.render_widget(
        Paragraph::new(lines)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        r,
    );
}
