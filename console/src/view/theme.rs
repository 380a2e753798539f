//! Styles. Colour follows the level (green/yellow/red) but the meaning never depends on it:
//! every level is also written as a symbol and a word. Without colour (NO_COLOR) nothing is
//! styled except the selection (reversed). Only the 16 named colours are used, so a limited
//! terminal can be given basic SGR codes. The symbols come from the theme's glyph table
//! (Unicode or ASCII), never from literals in the views.

use std::borrow::Cow;

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use trustdeck_topology::fleet::Level;

use crate::text::glyphs::{Glyphs, UNICODE};
use crate::text::{Role, TextLine, fit_with};

/// Maps text roles to styles, with or without colour, and gives the symbols.
#[derive(Clone, Copy)]
pub struct Theme {
    /// Whether to style at all.
    pub color: bool,
    /// The symbols (Unicode or ASCII).
    pub g: &'static Glyphs,
}

impl Theme {
    /// Unicode symbols, with or without colour.
    pub fn unicode(color: bool) -> Self {
        Self { color, g: &UNICODE }
    }

    /// The symbol of a level.
    pub fn sym(self, l: Level) -> &'static str {
        self.g.level(l)
    }

    /// `s` cut to `w` columns with this theme's ellipsis.
    pub fn fit(self, s: &str, w: usize) -> Cow<'_, str> {
        fit_with(s, w, self.g.ellipsis)
    }

    /// The style of `role`.
    pub fn style(self, role: Role) -> Style {
        if !self.color {
            return Style::new();
        }
        let bold = Style::new().add_modifier(Modifier::BOLD);
        match role {
            Role::Plain => Style::new(),
            Role::Dim => Style::new().fg(Color::DarkGray),
            Role::Title => bold,
            Role::Tag => Style::new().fg(Color::Cyan),
            Role::Head => bold.fg(Color::DarkGray),
            Role::Stale => bold.fg(Color::Yellow),
            Role::Badge => Style::new().fg(Color::Black).bg(Color::Yellow),
            Role::Level(l) => Style::new().fg(level_color(l)),
            Role::Strong(l) => Style::new().fg(level_color(l)).patch(bold),
            Role::Countdown(Level::Ok) => Style::new(),
            Role::Countdown(l) => Style::new().fg(level_color(l)),
        }
    }

    pub fn level(self, l: Level) -> Style {
        self.style(Role::Level(l))
    }

    pub fn level_strong(self, l: Level) -> Style {
        self.style(Role::Strong(l))
    }

    /// A countdown: plain while ok, coloured once a threshold is crossed.
    pub fn left(self, l: Level) -> Style {
        self.style(Role::Countdown(l))
    }

    pub fn dim(self) -> Style {
        self.style(Role::Dim)
    }

    pub fn tag(self) -> Style {
        self.style(Role::Tag)
    }

    pub fn title(self) -> Style {
        self.style(Role::Title)
    }

    pub fn head(self) -> Style {
        self.style(Role::Head)
    }

    pub fn stale(self) -> Style {
        self.style(Role::Stale)
    }

    pub fn badge(self) -> Style {
        self.style(Role::Badge)
    }

    /// The selection: reversed, with or without colour.
    pub fn selected() -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// A document line as a ratatui line.
    pub fn line(self, l: &TextLine) -> Line<'static> {
        match l.spans.as_slice() {
            [] => Line::raw(""),
            [(t, r)] => Line::styled(t.clone(), self.style(*r)),
            parts => Line::from(
                parts
                    .iter()
                    .map(|(t, r)| Span::styled(t.clone(), self.style(*r)))
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

fn level_color(l: Level) -> Color {
    match l {
        Level::Ok => Color::Green,
        Level::Warning => Color::Yellow,
        Level::Critical => Color::Red,
    }
}
