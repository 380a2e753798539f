//! The console under an ASCII choice (a non-UTF-8 locale, a limited terminal, `--ascii`):
//! every cell of every view, overlay and mode is ASCII, the status table too, and a limited
//! terminal gets only basic colours. A view or a symbol added later is covered: the views come
//! from `View::ALL`.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use crossterm::event::KeyCode;
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::style::Color;
use trustdeck_console::app::{App, Mode, Msg, View, update};
use trustdeck_console::status;
use trustdeck_console::termcaps::SgrWriter;
use trustdeck_console::text::glyphs::{ASCII, Charset};
use trustdeck_topology::fleet::Thresholds;

mod fixture;
use fixture::*;

const SIZES: [(u16, u16); 3] = [(80, 24), (160, 48), (200, 60)];

fn ascii(mut app: App) -> App {
    app.charset = Charset::Ascii;
    app
}

/// Every non-ASCII cell of the screen, with where it is.
fn non_ascii(term: &ratatui::Terminal<ratatui::backend::TestBackend>) -> Vec<String> {
    let buf = term.backend().buffer();
    let mut out = Vec::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            let s = buf[(x, y)].symbol();
            if !s.is_ascii() {
                out.push(format!("{s:?} at {x},{y}: {}", lines(term)[usize::from(y)]));
            }
        }
    }
    out
}

/// Every screen the console can show on this fleet: each view, the help, the detail, the
/// filter and command lines, a message, and the too-small screen.
fn screens(w: u16, h: u16) -> Vec<(String, App)> {
    let mut out = Vec::new();
    for (fleet_name, f) in [
        ("base", fleet(2)),
        ("unreachable", unreachable_fleet()),
        ("never reached", dmz_never_reached_fleet()),
    ] {
        for v in View::ALL {
            let mut app = with_view(ascii(app_sized(f.clone(), w, h)), v);
            // A sample, so the timeline draws its cells.
            update(&mut app, Msg::Tick, now());
            out.push((format!("{fleet_name} {}", v.name()), app));
        }
    }
    let mut help = ascii(base(w, h));
    update(&mut help, ch('?'), now());
    assert_eq!(help.mode, Mode::Help);
    out.push(("help".into(), help));
    let mut detail = ascii(base(w, h));
    for _ in 0..3 {
        update(&mut detail, key(KeyCode::Down), now());
    }
    update(&mut detail, ch('d'), now());
    assert_eq!(detail.mode, Mode::Detail);
    out.push(("detail".into(), detail));
    let mut filter = ascii(base(w, h));
    typed(&mut filter, "/pay");
    out.push(("filter".into(), filter));
    let mut cmd = ascii(base(w, h));
    typed(&mut cmd, ":nosuch");
    update(&mut cmd, key(KeyCode::Enter), now());
    assert!(cmd.status.is_some());
    out.push(("message".into(), cmd));
    out
}

#[test]
fn every_screen_is_ascii_under_the_ascii_choice() {
    let mut bad = Vec::new();
    for (w, h) in SIZES {
        for (name, app) in screens(w, h) {
            for color in [false, true] {
                let cells = non_ascii(&draw(&app, w, h, color));
                if !cells.is_empty() {
                    bad.push(format!("{name} at {w}x{h}: {}", cells.join("\n  ")));
                }
            }
        }
    }
    let small = ascii(base(79, 24));
    let cells = non_ascii(&draw(&small, 79, 24, true));
    if !cells.is_empty() {
        bad.push(format!("too small: {}", cells.join("\n  ")));
    }
    assert!(bad.is_empty(), "non-ASCII cells:\n{}", bad.join("\n"));
}

#[test]
fn the_unicode_choice_still_draws_symbols() {
    // The scan above can fail: the same screens in Unicode are not ASCII.
    let term = draw(&base(80, 24), 80, 24, false);
    assert!(!non_ascii(&term).is_empty());
}

#[test]
fn status_table_is_ascii_under_the_ascii_choice() {
    let th = Thresholds::default();
    for f in [fleet(2), unreachable_fleet()] {
        let text = status::table_with(&f, now(), &th, &ASCII);
        let bad: Vec<&str> = text.lines().filter(|l| !l.is_ascii()).collect();
        assert!(bad.is_empty(), "non-ASCII lines:\n{}", bad.join("\n"));
        assert!(!status::table(&f, now(), &th).is_ascii());
    }
}

#[test]
fn a_healthy_fleet_reads_ok_once_in_ascii() {
    let th = Thresholds::default();
    let mut f = fleet(2);
    f.daemons.truncate(1);
    let text = status::table_with(&f, now(), &th, &ASCII);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("FLEET  OK   at "), "{text}");
}

#[test]
fn ascii_snapshots() {
    for (name, v) in [
        ("tree", View::Tree),
        ("segments", View::Segments),
        ("daemons", View::Daemons),
    ] {
        let app = with_view(ascii(unreachable(80, 24)), v);
        insta::assert_snapshot!(
            format!("ascii_{name}_80x24"),
            text(&draw(&app, 80, 24, false))
        );
    }
    let app = ascii(base(160, 48));
    insta::assert_snapshot!("ascii_tree_160x48", text(&draw(&app, 160, 48, false)));
    let th = Thresholds::default();
    insta::assert_snapshot!(
        "ascii_status_table",
        status::table_with(&unreachable_fleet(), now(), &th, &ASCII)
    );
}

/// Bytes written to the terminal.
#[derive(Clone, Default)]
struct Sink(Rc<RefCell<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Only the 16 named colours are ever used, so a limited terminal can be given basic codes.
fn named(c: Color) -> bool {
    !matches!(c, Color::Indexed(_) | Color::Rgb(..))
}

#[test]
fn a_limited_terminal_gets_only_basic_colour_codes() {
    for (w, h) in SIZES {
        for (name, app) in screens(w, h) {
            let term = draw(&app, w, h, true);
            let buf = term.backend().buffer().clone();
            let odd: Vec<_> = buf
                .content
                .iter()
                .filter(|c| !named(c.fg) || !named(c.bg))
                .collect();
            assert!(odd.is_empty(), "{name}: extended colours {odd:?}");
            // What the terminal receives: the frame written through the basic-colour writer.
            let sink = Sink::default();
            let mut be = CrosstermBackend::new(SgrWriter::new(sink.clone(), true));
            let cells = buf.content.iter().enumerate().map(|(i, c)| {
                let (x, y) = (i as u16 % w, i as u16 / w);
                (x, y, c)
            });
            be.draw(cells).expect("draw");
            Backend::flush(&mut be).expect("flush");
            let out = String::from_utf8_lossy(&sink.0.borrow()).into_owned();
            assert!(out.contains("\x1b["), "{name}: colours are written");
            for bad in ["38;5;", "48;5;", "38;2;", "48;2;"] {
                assert!(!out.contains(bad), "{name}: {bad:?} written");
            }
        }
    }
}

/// In ASCII the symbol of "ok" is the word: a healthy fleet's header says it once.
#[test]
fn a_healthy_header_says_ok_once() {
    let none: Vec<(String, String, DaemonRole, String)> = Vec::new();
    let app = ascii(app_sized(Fleet::new(none), 80, 24));
    let top = lines(&draw(&app, 80, 24, false)).remove(0);
    assert!(top.contains("| OK |"), "{top}");
    assert!(!top.contains("OK OK"), "{top}");
}
