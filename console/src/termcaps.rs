//! What the terminal can show, decided once at start from the environment and the flags (a
//! pure function: the caller reads the variables), and the one adaptation the terminal edge
//! needs for a limited terminal: colours written as basic SGR codes.
//!
//! - Characters: ASCII when `--ascii` is given, when the locale is not UTF-8, or when the
//!   terminal is limited; Unicode otherwise, or when `--unicode` forces it. The locale is the
//!   first non-empty of `LC_ALL`, `LC_CTYPE`, `LANG` (the C library's order); unset, `C` and
//!   `POSIX` are not UTF-8; otherwise its codeset (after `.`, before `@`; or the whole name,
//!   as macOS sends `LC_CTYPE=UTF-8`) must be `UTF-8` (any case, with or without the dash).
//! - Limited terminals ([`LIMITED_TERMS`]: `dumb`, the DEC VTs, the Linux console, `ansi`,
//!   `cons25`, and any `*-16color`/`*-8color`/`*-mono` variant) get ASCII and basic colours.
//!   An unset or empty `TERM` says nothing: the locale decides.
//! - Colours: none with `--no-color` or a non-empty `NO_COLOR`; basic (the 16 SGR colours
//!   30–37, 90–97 and their backgrounds) on a limited terminal; otherwise as crossterm writes
//!   them (`38;5;N`).

use std::borrow::Cow;
use std::io::{self, Write};

use crate::text::glyphs::Charset;

/// `TERM` values (and prefixes, ending in `*`) of terminals without Unicode or 256 colours.
pub const LIMITED_TERMS: &[&str] = &[
    "dumb", "vt52", "vt1*", "vt2*", "vt3*", "vt4*", "vt5*", "linux", "ansi", "cons25", "sun",
];

/// `TERM` suffixes that say the terminal has few colours.
const FEW_COLOUR_SUFFIXES: &[&str] = &["-16color", "-8color", "-mono"];

/// What `--ascii` / `--unicode` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CharsetFlag {
    /// Decide from the locale and `TERM`.
    #[default]
    Auto,
    Ascii,
    Unicode,
}

/// How colours are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colors {
    /// No colour at all (NO_COLOR, `--no-color`).
    None,
    /// The 16 basic SGR colours only.
    Basic,
    /// As crossterm writes them (256-colour codes).
    Full,
}

/// The terminal's capabilities as the console uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermCaps {
    pub charset: Charset,
    pub colors: Colors,
}

/// Whether a locale name (`en_US.UTF-8`, `C`, `de_DE@euro`) uses UTF-8. A bare codeset
/// (`UTF-8`, what macOS Terminal sends as `LC_CTYPE` over SSH) counts: it says what the user's
/// terminal shows even where the C library does not know the name.
pub fn locale_is_utf8(name: &str) -> bool {
    let codeset = name.split_once('.').map_or(name, |(_, rest)| rest);
    let codeset = codeset.split('@').next().unwrap_or("");
    codeset.replace('-', "").eq_ignore_ascii_case("utf8")
}

/// The effective `LC_CTYPE` locale: the first non-empty of `LC_ALL`, `LC_CTYPE`, `LANG`.
fn ctype_locale(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .filter_map(|k| env(k))
        .find(|v| !v.is_empty())
}

/// Whether `TERM` names a terminal without Unicode or 256 colours.
pub fn term_is_limited(term: &str) -> bool {
    let t = term.to_ascii_lowercase();
    LIMITED_TERMS.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => t.starts_with(prefix),
        None => t == *p,
    }) || FEW_COLOUR_SUFFIXES.iter().any(|s| t.ends_with(s))
}

/// Decides the charset and colours from the environment (`env` returns a variable's value)
/// and the flags.
pub fn detect(
    env: &dyn Fn(&str) -> Option<String>,
    flag: CharsetFlag,
    no_color_flag: bool,
) -> TermCaps {
    let limited = env("TERM").is_some_and(|t| term_is_limited(&t));
    let utf8 = ctype_locale(env).is_some_and(|l| locale_is_utf8(&l));
    let charset = match flag {
        CharsetFlag::Ascii => Charset::Ascii,
        CharsetFlag::Unicode => Charset::Unicode,
        CharsetFlag::Auto if utf8 && !limited => Charset::Unicode,
        CharsetFlag::Auto => Charset::Ascii,
    };
    let no_color = no_color_flag || env("NO_COLOR").is_some_and(|v| !v.is_empty());
    let colors = if no_color {
        Colors::None
    } else if limited {
        Colors::Basic
    } else {
        Colors::Full
    };
    TermCaps { charset, colors }
}

/// Rewrites the SGR sequences of `out` to basic colours: `38;5;N`/`48;5;N` with N < 16 become
/// 30–37/90–97 (40–47/100–107), any other indexed or RGB colour the default (39/49).
pub fn basic_sgr(out: &[u8]) -> Cow<'_, [u8]> {
    if !out.windows(2).any(|w| w == b"8;") {
        return Cow::Borrowed(out);
    }
    let mut res = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        if out[i] == 0x1b && out.get(i + 1) == Some(&b'[') {
            let start = i + 2;
            let mut j = start;
            while j < out.len() && (out[j].is_ascii_digit() || out[j] == b';') {
                j += 1;
            }
            if out.get(j) == Some(&b'm') {
                res.extend_from_slice(b"\x1b[");
                res.extend_from_slice(sgr_params(&out[start..j]).as_bytes());
                res.push(b'm');
                i = j + 1;
                continue;
            }
        }
        res.push(out[i]);
        i += 1;
    }
    Cow::Owned(res)
}

/// One SGR parameter list with extended colours made basic.
fn sgr_params(p: &[u8]) -> String {
    let s = String::from_utf8_lossy(p);
    let ps: Vec<&str> = s.split(';').collect();
    let mut out: Vec<String> = Vec::new();
    let mut k = 0;
    while k < ps.len() {
        let (base, default) = match ps[k] {
            "38" => (30, "39"),
            "48" => (40, "49"),
            other => {
                out.push(other.to_string());
                k += 1;
                continue;
            }
        };
        match ps.get(k + 1).copied() {
            Some("5") => {
                let n: Option<u8> = ps.get(k + 2).and_then(|n| n.parse().ok());
                out.push(match n {
                    Some(n) if n < 8 => (base + u16::from(n)).to_string(),
                    Some(n) if n < 16 => (base + 60 + u16::from(n - 8)).to_string(),
                    _ => default.to_string(),
                });
                k += 3;
            }
            Some("2") => {
                out.push(default.to_string());
                k += 5;
            }
            _ => {
                out.push(default.to_string());
                k += 1;
            }
        }
    }
    out.join(";")
}

/// A writer that holds a frame until `flush`, then writes it with basic colours (when
/// `basic`) or as is.
pub struct SgrWriter<W: Write> {
    inner: W,
    basic: bool,
    buf: Vec<u8>,
}

impl<W: Write> SgrWriter<W> {
    pub fn new(inner: W, basic: bool) -> Self {
        Self {
            inner,
            basic,
            buf: Vec::new(),
        }
    }
}

impl<W: Write> Write for SgrWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let frame = std::mem::take(&mut self.buf);
        if self.basic {
            self.inner.write_all(&basic_sgr(&frame))?;
        } else {
            self.inner.write_all(&frame)?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = vars
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |k| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
    }

    fn caps(vars: &[(&str, &str)], flag: CharsetFlag) -> TermCaps {
        detect(&env_of(vars), flag, false)
    }

    #[test]
    fn the_locale_follows_the_c_library_order() {
        let u = |v: &[(&str, &str)]| caps(v, CharsetFlag::Auto).charset;
        assert_eq!(
            u(&[("LANG", "en_US.UTF-8"), ("TERM", "xterm")]),
            Charset::Unicode
        );
        assert_eq!(u(&[("LANG", "C.utf8")]), Charset::Unicode);
        // LC_ALL wins over LANG, LC_CTYPE over LANG; an empty value is skipped.
        assert_eq!(
            u(&[("LC_ALL", "C"), ("LANG", "en_US.UTF-8")]),
            Charset::Ascii
        );
        assert_eq!(
            u(&[
                ("LC_ALL", ""),
                ("LC_CTYPE", "POSIX"),
                ("LANG", "en_US.UTF-8")
            ]),
            Charset::Ascii
        );
        assert_eq!(
            u(&[("LC_CTYPE", "de_DE.UTF-8@euro"), ("LANG", "C")]),
            Charset::Unicode
        );
        // macOS Terminal sends a bare codeset over SSH (SendEnv LC_*): the terminal is UTF-8.
        assert_eq!(u(&[("LC_CTYPE", "UTF-8"), ("LANG", "C")]), Charset::Unicode);
        assert_eq!(u(&[("LANG", "utf8")]), Charset::Unicode);
        assert_eq!(u(&[("LANG", "en_US.ISO-8859-1")]), Charset::Ascii);
        assert_eq!(u(&[("LANG", "en_US")]), Charset::Ascii);
        assert_eq!(u(&[]), Charset::Ascii, "no locale at all is C");
    }

    #[test]
    fn limited_terminals_get_ascii_and_basic_colours() {
        for term in [
            "vt100",
            "vt220",
            "linux",
            "dumb",
            "VT102",
            "xterm-16color",
            "ansi",
        ] {
            let c = caps(
                &[("LANG", "en_US.UTF-8"), ("TERM", term)],
                CharsetFlag::Auto,
            );
            assert_eq!(c.charset, Charset::Ascii, "{term}");
            assert_eq!(c.colors, Colors::Basic, "{term}");
        }
        for term in ["xterm", "xterm-256color", "screen", "tmux-256color", ""] {
            let c = caps(
                &[("LANG", "en_US.UTF-8"), ("TERM", term)],
                CharsetFlag::Auto,
            );
            assert_eq!(c.charset, Charset::Unicode, "{term}");
            assert_eq!(c.colors, Colors::Full, "{term}");
        }
    }

    #[test]
    fn flags_and_no_color_decide_over_the_environment() {
        let jump_host = [("LANG", "C"), ("LC_ALL", "C"), ("TERM", "vt100")];
        assert_eq!(
            caps(&jump_host, CharsetFlag::Unicode).charset,
            Charset::Unicode
        );
        let desk = [("LANG", "en_US.UTF-8"), ("TERM", "xterm-256color")];
        assert_eq!(caps(&desk, CharsetFlag::Ascii).charset, Charset::Ascii);
        assert_eq!(
            detect(
                &env_of(&[("NO_COLOR", "1"), ("TERM", "vt100")]),
                CharsetFlag::Auto,
                false
            )
            .colors,
            Colors::None
        );
        assert_eq!(
            detect(&env_of(&[("NO_COLOR", "")]), CharsetFlag::Auto, false).colors,
            Colors::Full
        );
        assert_eq!(
            detect(&env_of(&desk), CharsetFlag::Auto, true).colors,
            Colors::None
        );
    }

    #[test]
    fn extended_colours_become_basic_sgr() {
        let s = |b: &[u8]| String::from_utf8(basic_sgr(b).into_owned()).expect("utf8");
        assert_eq!(s(b"\x1b[38;5;2mok"), "\x1b[32mok");
        assert_eq!(s(b"\x1b[38;5;9;48;5;0mX"), "\x1b[91;40mX");
        assert_eq!(s(b"\x1b[48;5;11m"), "\x1b[103m");
        assert_eq!(s(b"\x1b[38;5;208m\x1b[38;2;1;2;3m"), "\x1b[39m\x1b[39m");
        assert_eq!(s(b"\x1b[1m\x1b[0m\x1b[10;5H"), "\x1b[1m\x1b[0m\x1b[10;5H");
        let mut w = SgrWriter::new(Vec::new(), true);
        w.write_all(b"\x1b[38;5;")
            .and_then(|()| w.write_all(b"1mX"))
            .expect("write");
        w.flush().expect("flush");
        assert_eq!(w.inner, b"\x1b[31mX");
    }
}
