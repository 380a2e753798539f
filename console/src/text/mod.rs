//! What the console says, as data: the words for levels, kinds and countdowns
//! ([`format`]), and the scrollable documents of the help and detail overlays ([`help`],
//! [`detail`]) as lines of text pieces, each with a [`Role`]. The view gives each role a style;
//! the layout measures the documents (so `update` knows how far an overlay scrolls without
//! drawing it).
//!
//! The console's text is ASCII plus single-width symbols: a character is a column.

use std::borrow::Cow;

use trustdeck_topology::fleet::Level;

pub mod chain;
pub mod cli;
pub mod detail;
pub mod event;
pub mod format;
pub mod help;

/// What a piece of text is; the view's theme maps it to a style (or to none without colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Plain,
    /// Secondary text: labels, hints, separators.
    Dim,
    /// Names and titles (bold).
    Title,
    /// Kind tags and key names.
    Tag,
    /// Column headers.
    Head,
    /// A daemon's last-known state (it is unreachable).
    Stale,
    /// The READ-ONLY badge.
    Badge,
    /// Coloured by level.
    Level(Level),
    /// Coloured by level, bold.
    Strong(Level),
    /// A countdown: plain while ok, coloured once a threshold is crossed.
    Countdown(Level),
}

/// One line of a document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextLine {
    /// The pieces, left to right.
    pub spans: Vec<(Cow<'static, str>, Role)>,
}

impl TextLine {
    /// An empty line.
    pub fn blank() -> Self {
        Self::default()
    }

    /// A line of one piece.
    pub fn one(text: impl Into<Cow<'static, str>>, role: Role) -> Self {
        Self {
            spans: vec![(text.into(), role)],
        }
    }

    /// A line of two pieces (a label and its value).
    pub fn pair(
        a: impl Into<Cow<'static, str>>,
        ra: Role,
        b: impl Into<Cow<'static, str>>,
        rb: Role,
    ) -> Self {
        Self {
            spans: vec![(a.into(), ra), (b.into(), rb)],
        }
    }

    /// Columns taken, unwrapped.
    pub fn width(&self) -> usize {
        self.spans.iter().map(|(t, _)| width(t)).sum()
    }
}

/// Columns taken by `s`.
pub fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `w` columns, with `…` when cut.
pub fn fit(s: &str, w: usize) -> Cow<'_, str> {
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
