//! The timeline view: an hour of ticks over the fixed fleet, with the dmz server unreachable
//! for the last 10 minutes and back for none of them.

use crossterm::event::KeyCode;
use trustdeck_console::app::{App, Msg, View, update};
use trustdeck_topology::fleet::DaemonConn;

mod fixture;
use fixture::*;

/// The fixed fleet watched for `minutes` (a tick every 20 s), dmz lost 10 minutes ago.
fn watched(minutes: i64, w: u16, h: u16) -> App {
    let mut app = base(w, h);
    let lost = at(-10 * 60 + 5);
    for k in (0..=minutes * 3).rev() {
        let t = at(-k * 20);
        if t >= lost && app.fleet.daemons[2].is_live() {
            let conn = DaemonConn::Lost {
                since: lost,
                error: "connection refused".into(),
            };
            update(&mut app, Msg::Conn { daemon: 2, conn }, lost);
        }
        update(&mut app, Msg::Tick, t);
    }
    app
}

#[test]
fn the_timeline_says_when_it_started() {
    let app = with_view(watched(50, 120, 40), View::Timeline);
    let l = lines(&draw(&app, 120, 40, false));
    let row = |kind: &str, name: &str| {
        l.iter()
            .find(|s| s.contains(kind) && s.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("{kind} {name}:\n{}", l.join("\n")))
            .clone()
    };
    let dmz = row("daemon", "dmz");
    assert!(dmz.contains("unreachable since 07:02:"), "{dmz}");
    // Ten minutes of unreachable at the right end, unknown before the console watched.
    assert!(dmz.trim_end().ends_with(&"▒".repeat(10)), "{dmz}");
    assert!(dmz.contains("··"), "{dmz}");
    let seg = row("segment", "dmz");
    assert!(seg.contains("unreachable since 07:02:"), "{seg}");
    // The upstream lost on dmz was critical before the console started watching.
    assert!(row("daemon", "upstream").contains("ok"));
    insta::assert_snapshot!("timeline_120x40", l.join("\n"));
}

#[test]
fn the_timeline_at_80x24_and_its_key() {
    let mut app = watched(50, 80, 24);
    update(&mut app, ch('T'), now());
    assert_eq!(app.view, View::Timeline);
    insta::assert_snapshot!("timeline_80x24", text(&draw(&app, 80, 24, false)));
    // enter shows the row's daemon in the tree.
    update(&mut app, key(KeyCode::Enter), now());
    assert_eq!(app.view, View::Tree);
}

#[test]
fn daemon_names_can_be_told_apart() {
    for (w, h) in [(80, 24), (200, 60)] {
        let mut f = fleet(2);
        f.daemons[1].name = "gcp-workloads-1".into();
        f.daemons[2].name = "gcp-workloads-2".into();
        let mut app = with_view(app_sized(f, w, h), View::Timeline);
        update(&mut app, Msg::Tick, now());
        let l = lines(&draw(&app, w, h, false));
        let names: Vec<String> = l
            .iter()
            .filter_map(|s| s.strip_prefix(" daemon  "))
            .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
            .collect();
        assert_eq!(names.len(), 3, "{w}x{h}:\n{}", l.join("\n"));
        assert_ne!(names[1], names[2], "{w}x{h}: {names:?}");
        if w >= 120 {
            assert_eq!(names[1], "gcp-workloads-1", "{w}x{h}: {names:?}");
        }
    }
}

/// At 80 columns the key of the cells is whole, so `?` (unreachable) and `.` (no data) can be
/// told apart in ASCII too.
#[test]
fn the_key_fits_at_80_columns() {
    let mut app = watched(50, 80, 24);
    update(&mut app, ch('T'), now());
    let s = lines(&draw(&app, 80, 24, false)).join("\n");
    assert!(s.contains("▁ok ▄warn █crit ▒unreach ·none"), "{s}");
    app.charset = trustdeck_console::text::glyphs::Charset::Ascii;
    let s = lines(&draw(&app, 80, 24, false)).join("\n");
    assert!(s.contains("_ok !warn Xcrit ?unreach .none"), "{s}");
}
