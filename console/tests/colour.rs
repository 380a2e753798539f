//! Colour and style: severities coloured only with colour on, the selection reversed either
//! way, the stale marker, and one screen's styles in full.

mod fixture;

use fixture::*;

fn find(term: &Terminal<TestBackend>, row_has: &str, cell_text: &str) -> (u16, u16) {
    let l = lines(term);
    for (y, line) in l.iter().enumerate() {
        if line.contains(row_has)
            && let Some(bx) = line.find(cell_text)
        {
            let x = line[..bx].chars().count();
            return (x as u16, y as u16);
        }
    }
    panic!(
        "no row with {row_has:?} and {cell_text:?}:\n{}",
        l.join("\n")
    );
}

#[test]
fn critical_countdown_is_red_only_with_colour() {
    let app = base(160, 48);
    let on = draw(&app, 160, 48, true);
    let (x, y) = find(&on, "staging/search/indexer", "2m 00s");
    assert_eq!(on.backend().buffer()[(x, y)].fg, Color::Red);
    let (lx, ly) = find(&on, "staging/search/indexer", "✗ critical");
    assert_eq!(on.backend().buffer()[(lx, ly)].fg, Color::Red);
    let (wx, wy) = find(&on, "prod/payments/worker", "! warning");
    assert_eq!(on.backend().buffer()[(wx, wy)].fg, Color::Yellow);
    let (ox, oy) = find(&on, "prod/payments/api", "✓ ok");
    assert_eq!(on.backend().buffer()[(ox, oy)].fg, Color::Green);

    let off = draw(&app, 160, 48, false);
    let (x, y) = find(&off, "staging/search/indexer", "2m 00s");
    assert_eq!(off.backend().buffer()[(x, y)].fg, Color::Reset);
    // No colour anywhere without colour.
    let buf = off.backend().buffer();
    for c in buf.content() {
        assert_eq!(c.fg, Color::Reset);
        assert_eq!(c.bg, Color::Reset);
    }
}

#[test]
fn selection_is_reversed_with_and_without_colour() {
    use ratatui::style::Modifier;
    for color in [true, false] {
        let app = base(80, 24);
        let term = draw(&app, 80, 24, color);
        let (x, y) = find(&term, "upstream", "upstream");
        // Row 0 of the tree is the upstream server, selected at start.
        let l = lines(&term);
        let row = l
            .iter()
            .position(|s| s.contains("SRV  upstream"))
            .expect("row");
        assert!(y as usize <= row);
        let _ = x;
        let cell = &term.backend().buffer()[(5, row as u16)];
        assert!(cell.modifier.contains(Modifier::REVERSED));
    }
}

#[test]
fn stale_marker_is_styled_with_colour() {
    let app = unreachable(160, 48);
    let on = draw(&app, 160, 48, true);
    let (x, y) = find(&on, "prod/payments/api", "STALE 40s");
    assert_eq!(on.backend().buffer()[(x, y)].fg, Color::Yellow);
    insta::assert_debug_snapshot!("tree_80x24_color_styles", {
        let t = draw(&base(80, 24), 80, 24, true);
        t.backend().buffer().clone()
    });
}
