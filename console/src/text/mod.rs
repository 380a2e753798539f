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
pub mod federation;
pub mod format;
pub mod glyphs;
pub mod help;
pub mod runbook;
pub mod window;

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

/// `s` cut to `w` columns, with `ellipsis` when cut (as much of it as fits).
pub fn fit_with<'a>(s: &'a str, w: usize, ellipsis: &str) -> Cow<'a, str> {
    if width(s) <= w {
        Cow::Borrowed(s)
    } else {
        let e = width(ellipsis).min(w);
        let mut out: String = s.chars().take(w - e).collect();
        out.extend(ellipsis.chars().take(e));
        Cow::Owned(out)
    }
}

/// `s` cut in the middle to at most `w` columns, keeping its start and its (more telling)
/// end: `/prod/gcp/payments/worker` in 16 columns is `/prod/…/worker`. A path keeps its first
/// segment and starts its end at a `/` when that loses little.
pub fn fit_middle<'a>(s: &'a str, w: usize, ellipsis: &str) -> Cow<'a, str> {
    let n = width(s);
    if n <= w {
        return Cow::Borrowed(s);
    }
    let e = width(ellipsis);
    if w <= e + 2 {
        return fit_with(s, w, ellipsis);
    }
    let chars: Vec<char> = s.chars().collect();
    let room = w - e;
    let mut head = room / 3;
    // End the head after a `/` when one is near.
    if let Some(p) = chars[..=head].iter().rposition(|&c| c == '/')
        && p > 0
        && head - p <= 3
    {
        head = p + 1;
    }
    let mut tail = room - head;
    // Start the tail at a `/` when that keeps most of it.
    if let Some(q) = chars[n - tail..].iter().position(|&c| c == '/')
        && q <= tail / 3
    {
        tail -= q;
    }
    let mut out: String = chars[..head].iter().collect();
    out.push_str(ellipsis);
    out.extend(&chars[n - tail..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_with_the_ellipsis_of_the_charset() {
        assert_eq!(fit_with("abcdef", 4, "…"), "abc…");
        assert_eq!(fit_with("abcdef", 4, "..."), "a...");
        assert_eq!(fit_with("abcdef", 2, "..."), "..");
        assert_eq!(fit_with("abc", 3, "..."), "abc");
    }

    #[test]
    fn fit_middle_keeps_the_distinguishing_tail() {
        let a = fit_middle("/prod/gcp/payments/api", 16, "…");
        let b = fit_middle("/prod/gcp/payments/worker", 16, "…");
        assert_eq!(a, "/prod/…ments/api");
        assert_eq!(b, "/prod/…/worker");
        assert!(a.starts_with("/prod/"), "{a}");
        assert_ne!(a, b);
        assert_eq!(fit_middle("short", 16, "…"), "short");
        let c = fit_middle("/trustdeck/agent/gcp/node-1", 14, "...");
        assert!(width(&c) <= 14, "{c}");
        assert!(c.ends_with("node-1") && c.contains("..."), "{c}");
    }
}
