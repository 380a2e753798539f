//! `q` and `esc`: `q` quits only from the main view; anywhere else it goes back like `esc`.

mod fixture;

use fixture::*;

#[test]
fn q_in_another_view_goes_back_to_the_tree() {
    for v in [View::Expiring, View::Segments, View::Events, View::Daemons] {
        let mut app = with_view(base(80, 24), v);
        let fx = update(&mut app, ch('q'), now());
        assert!(!fx.contains(&Effect::Quit), "{v:?}: q quit");
        assert_eq!(app.view, View::Tree, "{v:?}");
    }
}

#[test]
fn q_in_another_view_clears_the_filter_first_like_esc() {
    let mut app = with_view(base(80, 24), View::Expiring);
    typed(&mut app, "/payments");
    update(&mut app, key(KeyCode::Enter), now());
    assert!(!update(&mut app, ch('q'), now()).contains(&Effect::Quit));
    assert!(app.filter.is_empty());
    assert_eq!(app.view, View::Expiring);
}

#[test]
fn q_in_the_tree_quits() {
    let mut app = base(80, 24);
    assert!(update(&mut app, ch('q'), now()).contains(&Effect::Quit));
}

#[test]
fn q_closes_popups_without_quitting() {
    let mut app = base(80, 24);
    update(&mut app, ch('?'), now());
    assert!(!update(&mut app, ch('q'), now()).contains(&Effect::Quit));
    assert_eq!(app.mode, Mode::Normal);
    let mut app = base(80, 24);
    select(&mut app, "prod/payments/worker");
    update(&mut app, ch('d'), now());
    assert_eq!(app.mode, Mode::Detail);
    assert!(!update(&mut app, ch('q'), now()).contains(&Effect::Quit));
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn the_footer_says_what_q_does() {
    let tree = lines(&draw(&base(80, 24), 80, 24, false)).join("\n");
    assert!(tree.contains("q quit"), "{tree}");
    let exp = lines(&draw(
        &with_view(base(80, 24), View::Expiring),
        80,
        24,
        false,
    ))
    .join("\n");
    assert!(exp.contains("q back"), "{exp}");
}
