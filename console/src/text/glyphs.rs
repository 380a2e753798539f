//! Every symbol the console draws, in two tables: Unicode, and ASCII for a non-UTF-8 locale or
//! a limited terminal (see [`termcaps`](crate::termcaps) for the choice). Views and documents
//! take their symbols from here, through the view's theme, never as literals: an ASCII run
//! must write only ASCII, and the console's tests check every cell of every view for it.

use trustdeck_topology::fleet::Level;

/// Which table the console draws with; chosen once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    #[default]
    Unicode,
    Ascii,
}

impl Charset {
    /// The symbols of this charset.
    pub fn glyphs(self) -> &'static Glyphs {
        match self {
            Charset::Unicode => &UNICODE,
            Charset::Ascii => &ASCII,
        }
    }
}

/// The symbols, one field per meaning.
#[derive(Debug)]
pub struct Glyphs {
    /// Within thresholds, live, connected.
    pub ok: &'static str,
    pub warning: &'static str,
    /// Critical, expired, lost.
    pub critical: &'static str,
    /// Information (events).
    pub info: &'static str,
    /// In progress (connecting, loading); also the mark of text cut short.
    pub ellipsis: &'static str,
    /// An expanded tree node.
    pub expanded: &'static str,
    /// A collapsed tree node.
    pub collapsed: &'static str,
    /// A filled cell of a lifetime bar.
    pub bar_full: &'static str,
    /// An empty cell of a lifetime bar.
    pub bar_empty: &'static str,
    /// "leads to" in sentences (`upstream lost now → …`).
    pub arrow: &'static str,
    /// Separates header fields.
    pub vbar: &'static str,
    /// The line of title bars and frames.
    pub hline: &'static str,
    /// Separates words on one line (`3 segments · 1/3`).
    pub dot: &'static str,
    /// Not counted (old authorities).
    pub not_counted: &'static str,
    /// Nothing to show in a cell.
    pub none: &'static str,
    /// Width × height.
    pub times: &'static str,
    /// Arrow keys, as named in the help and the footer.
    pub key_up: &'static str,
    pub key_down: &'static str,
    pub key_left: &'static str,
    pub key_right: &'static str,
    /// Timeline cells: no sample, ok, warning, critical, unreachable (heights, so the state
    /// reads without colour).
    pub timeline: [&'static str; 5],
    /// Whether frames may use box drawing.
    pub box_drawing: bool,
}

/// The Unicode table (the default on a UTF-8 locale).
pub static UNICODE: Glyphs = Glyphs {
    ok: "✓",
    warning: "!",
    critical: "✗",
    info: "·",
    ellipsis: "…",
    expanded: "▾",
    collapsed: "▸",
    bar_full: "█",
    bar_empty: "░",
    arrow: "→",
    vbar: "│",
    hline: "─",
    dot: "·",
    not_counted: "–",
    none: "—",
    times: "×",
    key_up: "↑",
    key_down: "↓",
    key_left: "←",
    key_right: "→",
    timeline: ["·", "▁", "▄", "█", "▒"],
    box_drawing: true,
};

/// The ASCII table.
pub static ASCII: Glyphs = Glyphs {
    ok: "OK",
    warning: "!",
    critical: "X",
    info: "-",
    ellipsis: "...",
    expanded: "v",
    collapsed: ">",
    bar_full: "#",
    bar_empty: "-",
    arrow: "->",
    vbar: "|",
    hline: "-",
    dot: "-",
    not_counted: "-",
    none: "-",
    times: "x",
    key_up: "up",
    key_down: "down",
    key_left: "left",
    key_right: "right",
    timeline: [".", "_", "!", "X", "?"],
    box_drawing: false,
};

impl Glyphs {
    /// The symbol of a level.
    pub fn level(&self, l: Level) -> &'static str {
        match l {
            Level::Ok => self.ok,
            Level::Warning => self.warning,
            Level::Critical => self.critical,
        }
    }

    /// `symbol word`, or the word alone when the symbol already says it (`OK` for ok in
    /// ASCII, not `OK ok`).
    pub fn tagged(&self, symbol: &str, word: &str) -> String {
        if symbol.eq_ignore_ascii_case(word) {
            symbol.to_string()
        } else {
            format!("{symbol} {word}")
        }
    }

    /// A key name with its arrows in this charset (`j/↓` or `j/down`).
    pub fn keys(&self, keys: &str) -> String {
        keys.replace('↑', self.key_up)
            .replace('↓', self.key_down)
            .replace('←', self.key_left)
            .replace('→', self.key_right)
    }

    /// Help text with its arrows in this charset (`tree → expiring`).
    pub fn prose(&self, s: &str) -> String {
        s.replace('→', self.arrow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(g: &Glyphs) -> Vec<&'static str> {
        vec![
            g.ok,
            g.warning,
            g.critical,
            g.info,
            g.ellipsis,
            g.expanded,
            g.collapsed,
            g.bar_full,
            g.bar_empty,
            g.arrow,
            g.vbar,
            g.hline,
            g.dot,
            g.not_counted,
            g.none,
            g.times,
            g.key_up,
            g.key_down,
            g.key_left,
            g.key_right,
        ]
    }

    #[test]
    fn the_ascii_table_is_ascii_and_the_unicode_one_one_column_each() {
        assert!(all(&ASCII).iter().all(|s| s.is_ascii() && !s.is_empty()));
        assert!(all(&UNICODE).iter().all(|s| s.chars().count() == 1));
        for g in [&ASCII, &UNICODE] {
            assert!(g.timeline.iter().all(|s| s.chars().count() == 1));
        }
        assert!(ASCII.timeline.iter().all(|s| s.is_ascii()));
    }

    #[test]
    fn keys_and_prose_follow_the_charset() {
        assert_eq!(ASCII.keys("j/↓"), "j/down");
        assert_eq!(UNICODE.keys("j/↓"), "j/↓");
        assert_eq!(ASCII.prose("tree → expiring"), "tree -> expiring");
        assert_eq!(ASCII.tagged(ASCII.ok, "ok"), "OK");
        assert_eq!(UNICODE.tagged(UNICODE.ok, "ok"), "✓ ok");
        assert_eq!(ASCII.tagged(ASCII.critical, "expired"), "X expired");
    }
}
