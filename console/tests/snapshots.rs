//! Whole-console snapshots on ratatui's `TestBackend`: every view, overlay and mode at 80×24
//! and 160×48 (the text checked the same with colour on and off), the detail popup while it
//! loads or fails, and the too-small screen.
//!
//! The fleet and the helpers are in [`fixture`], shared with the other console tests; the
//! outage states are in `tests/outage.rs`, colour in `tests/colour.rs`, keys and messages in
//! `tests/update.rs`, `status`/`watch` text in `tests/status.rs`.

mod fixture;

use fixture::*;

#[test]
fn tree_view() {
    for (w, h) in SIZES {
        snap!(&format!("tree_{w}x{h}"), &base(w, h), w, h);
    }
}

#[test]
fn tree_view_scrolled_to_the_end() {
    let mut app = base(80, 24);
    update(&mut app, ch('G'), now());
    snap!("tree_end_80x24", &app, 80, 24);
}

#[test]
fn expiring_view() {
    for (w, h) in SIZES {
        snap!(
            &format!("expiring_{w}x{h}"),
            &with_view(base(w, h), View::Expiring),
            w,
            h,
        );
    }
}

#[test]
fn segments_view() {
    for (w, h) in SIZES {
        snap!(
            &format!("segments_{w}x{h}"),
            &with_view(base(w, h), View::Segments),
            w,
            h,
        );
    }
}

#[test]
fn events_view() {
    for (w, h) in SIZES {
        snap!(
            &format!("events_{w}x{h}"),
            &with_view(base(w, h), View::Events),
            w,
            h,
        );
    }
}

#[test]
fn daemons_view() {
    for (w, h) in SIZES {
        snap!(
            &format!("daemons_{w}x{h}"),
            &with_view(unreachable(w, h), View::Daemons),
            w,
            h,
        );
    }
}

fn detail_app(w: u16, h: u16, answer: bool) -> App {
    let mut app = base(w, h);
    assert!(app.show_in_tree(&worker_id(), now()));
    let fx = update(&mut app, ch('d'), now());
    assert!(fx.contains(&Effect::FetchDetail {
        daemon: 1,
        node_id: worker_id()
    }));
    assert_eq!(app.mode, Mode::Detail);
    if answer {
        let node = app.detail.as_ref().map(|d| d.node.clone());
        update(
            &mut app,
            Msg::Detail {
                node_id: worker_id(),
                result: Ok(NodeDetail {
                    node,
                    chain_der: vec![vec![0x30; 600], vec![0x30; 800]],
                    fields: vec![
                        "issuer: O=trustdeck, CN=gcp intermediate 41".into(),
                        "signature: ECDSA P-256 SHA-256".into(),
                        "URI SAN: spiffe://demo.trustdeck/prod/gcp/payments/worker".into(),
                    ],
                }),
            },
            now(),
        );
    }
    app
}

/// The answered detail is in `tests/detail.rs` (with real certificates).
#[test]
fn detail_popup() {
    snap!("detail_loading_80x24", &detail_app(80, 24, false), 80, 24);
    // A chain the console cannot parse: the daemon's own lines, aligned.
    let l = lines(&draw(&detail_app(160, 48, true), 160, 48, false)).join("\n");
    assert!(l.contains("certificate  unreadable; gcp says:"), "{l}");
    assert!(l.contains("signature    ECDSA P-256 SHA-256"), "{l}");
    let mut app = detail_app(80, 24, false);
    update(
        &mut app,
        Msg::Detail {
            node_id: worker_id(),
            result: Err(DetailError::Rpc("GetNode: deadline exceeded".into())),
        },
        now(),
    );
    let l = lines(&draw(&app, 80, 24, false)).join("\n");
    assert!(
        l.contains("certificate  ✗ not fetched from gcp: GetNode: deadline exceeded"),
        "{l}"
    );
}

#[test]
fn help_overlay() {
    for (w, h) in SIZES {
        let mut app = base(w, h);
        update(&mut app, ch('?'), now());
        assert_eq!(app.mode, Mode::Help);
        snap!(&format!("help_{w}x{h}"), &app, w, h);
    }
}

#[test]
fn filter_mode() {
    for (w, h) in SIZES {
        let mut app = base(w, h);
        typed(&mut app, "/payments");
        assert_eq!(app.mode, Mode::Filter);
        snap!(&format!("filter_{w}x{h}"), &app, w, h);
    }
}

#[test]
fn command_mode() {
    for (w, h) in SIZES {
        let mut app = base(w, h);
        typed(&mut app, ":se");
        assert_eq!(app.mode, Mode::Command);
        snap!(&format!("command_{w}x{h}"), &app, w, h);
    }
}

#[test]
fn unknown_command() {
    let mut app = base(80, 24);
    typed(&mut app, ":frobnicate");
    update(&mut app, key(KeyCode::Enter), now());
    assert_eq!(app.mode, Mode::Normal);
    let status = app.status.clone().expect("a status message");
    assert!(status.text.contains("unknown command \":frobnicate\""));
    snap!("unknown_command_80x24", &app, 80, 24);
    // The next key clears it.
    update(&mut app, ch('j'), now());
    assert!(app.status.is_none());
}

#[test]
fn too_small() {
    for (w, h) in [(79, 24), (80, 23), (40, 10)] {
        let app = base(w, h);
        let term = draw(&app, w, h, false);
        // Wrapped on very small terminals: compare with the whitespace folded.
        let l = lines(&term).join(" ");
        let folded = l.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            folded.contains(&format!(
                "terminal too small: need at least 80×24, have {w}×{h}"
            )),
            "{l}"
        );
    }
    snap!("too_small_79x24", &base(79, 24), 79, 24);
    // The message says q quits: it does, at any size.
    let mut app = base(40, 10);
    let fx = update(&mut app, key(KeyCode::Char('q')), now());
    assert!(fx.iter().any(|e| matches!(e, Effect::Quit)), "{fx:?}");
}

#[test]
fn detail_answers_for_other_nodes_are_ignored() {
    let mut app = detail_app(80, 24, false);
    let fx = update(
        &mut app,
        Msg::Detail {
            node_id: "x509:nope".into(),
            result: Err(DetailError::Rpc("x".into())),
        },
        now(),
    );
    assert!(fx.is_empty());
    assert!(app.detail.as_ref().is_some_and(|d| d.fetched.is_none()));
}
