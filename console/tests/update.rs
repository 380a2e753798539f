//! `update`, driven by messages: keys, the filter, commands, collapse/expand, the selection
//! across deltas, revision gaps, connection loss, the mouse, and the help generated from the
//! key map.

mod fixture;

use fixture::*;

#[test]
fn moving_and_quitting() {
    let mut app = base(80, 24);
    assert_eq!(app.cursor(View::Tree), 0);
    assert_eq!(update(&mut app, ch('j'), now()), vec![Effect::Redraw]);
    update(&mut app, key(KeyCode::Down), now());
    assert_eq!(app.cursor(View::Tree), 2);
    update(&mut app, ch('k'), now());
    assert_eq!(app.cursor(View::Tree), 1);
    update(&mut app, ch('G'), now());
    assert_eq!(app.cursor(View::Tree), app.rows().len() - 1);
    update(&mut app, ch('g'), now());
    assert_eq!(app.cursor(View::Tree), 0);
    update(&mut app, key(KeyCode::PageDown), now());
    assert!(app.cursor(View::Tree) > 5);
    // An unbound key changes nothing and draws nothing.
    assert_eq!(update(&mut app, ch('Z'), now()), vec![]);
    // The first tick also lists the runbook journal (the in-progress banner).
    assert_eq!(
        update(&mut app, Msg::Tick, now()),
        vec![
            Effect::Runbook(trustdeck_console::app::RunbookEffect::List),
            Effect::Redraw
        ]
    );
    assert_eq!(update(&mut app, Msg::Tick, now()), vec![Effect::Redraw]);
    assert_eq!(
        update(&mut app, ch('q'), now()),
        vec![Effect::Quit, Effect::Redraw]
    );
    let ctrl_c = Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    let mut app = base(80, 24);
    typed(&mut app, "/abc");
    assert!(update(&mut app, ctrl_c, now()).contains(&Effect::Quit));
}

#[test]
fn tab_cycles_views_and_esc_goes_back() {
    let mut app = base(80, 24);
    for v in [
        View::Expiring,
        View::Segments,
        View::Events,
        View::Daemons,
        View::Timeline,
        View::Tree,
    ] {
        update(&mut app, key(KeyCode::Tab), now());
        assert_eq!(app.view, v);
    }
    update(&mut app, key(KeyCode::BackTab), now());
    assert_eq!(app.view, View::Timeline);
    update(&mut app, key(KeyCode::Esc), now());
    assert_eq!(app.view, View::Tree);
}

#[test]
fn filter_narrows_and_esc_clears() {
    let mut app = base(80, 24);
    let all = app.rows().len();
    typed(&mut app, "/payments");
    let ids: Vec<String> = app
        .rows()
        .iter()
        .map(|r| app.tree().nodes[r.idx].node.label.clone())
        .collect();
    assert_eq!(
        ids,
        vec![
            "upstream",
            "gcp",
            "gcp-agent-1",
            "prod/payments/api",
            "prod/payments/worker"
        ]
    );
    update(&mut app, key(KeyCode::Backspace), now());
    assert_eq!(app.filter, "payment");
    update(&mut app, key(KeyCode::Enter), now());
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.filter, "payment");
    assert_eq!(app.len(View::Expiring), 2);
    update(&mut app, key(KeyCode::Esc), now());
    assert!(app.filter.is_empty());
    assert_eq!(app.rows().len(), all);
    // Esc while typing clears it too.
    typed(&mut app, "/dmz");
    assert!(app.rows().len() < all);
    update(&mut app, key(KeyCode::Esc), now());
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.rows().len(), all);
}

#[test]
fn commands() {
    let mut app = base(80, 24);
    for (cmd, v) in [
        ("expiring", View::Expiring),
        ("seg", View::Segments),
        ("events", View::Events),
        ("dm", View::Daemons),
        ("tree", View::Tree),
    ] {
        typed(&mut app, &format!(":{cmd}"));
        update(&mut app, key(KeyCode::Enter), now());
        assert_eq!(app.view, v, "{cmd}");
        assert!(app.status.is_none());
    }
    typed(&mut app, ":da");
    update(&mut app, key(KeyCode::Tab), now());
    assert_eq!(app.command, "daemons");
    update(&mut app, key(KeyCode::Esc), now());
    assert_eq!(app.view, View::Tree);
    typed(&mut app, ":nope");
    assert!(update(&mut app, key(KeyCode::Enter), now()).contains(&Effect::Redraw));
    assert!(
        app.status
            .as_ref()
            .is_some_and(|s| s.text.contains("unknown command \":nope\""))
    );
    typed(&mut app, ":mouse");
    update(&mut app, key(KeyCode::Enter), now());
    assert!(app.mouse);
    for q in [":q", ":quit"] {
        let mut app = base(80, 24);
        typed(&mut app, q);
        assert!(update(&mut app, key(KeyCode::Enter), now()).contains(&Effect::Quit));
    }
}

#[test]
fn collapse_and_expand() {
    let mut app = base(80, 24);
    let all = app.rows().len();
    select(&mut app, "gcp-agent-1");
    update(&mut app, ch('h'), now());
    assert_eq!(app.rows().len(), all - 3);
    // h again goes to the parent.
    update(&mut app, ch('h'), now());
    assert_eq!(
        app.selected_id(),
        Some(format!("server:{}", server_id("gcp")).as_str())
    );
    select(&mut app, "gcp-agent-1");
    update(&mut app, ch('l'), now());
    assert_eq!(app.rows().len(), all);
    // l on an expanded node goes to its first child.
    update(&mut app, ch('l'), now());
    assert_eq!(
        app.tree().nodes[app.selected_node().expect("sel")]
            .node
            .label,
        "prod/ledger/db"
    );
    // enter toggles a node with children...
    select(&mut app, "gcp-agent-2");
    update(&mut app, key(KeyCode::Enter), now());
    assert_eq!(app.rows().len(), all - 2);
    update(&mut app, key(KeyCode::Enter), now());
    assert_eq!(app.rows().len(), all);
    // ...and opens the detail of a leaf.
    select(&mut app, "prod/search/indexer");
    let fx = update(&mut app, key(KeyCode::Enter), now());
    assert!(matches!(fx[0], Effect::FetchDetail { daemon: 1, .. }));
    update(&mut app, key(KeyCode::Esc), now());
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.detail.is_none());
    // c collapses every agent, keeping the selection on the nearest visible ancestor.
    update(&mut app, ch('c'), now());
    assert_eq!(app.rows().len(), all - 9);
    assert_eq!(
        app.tree().nodes[app.selected_node().expect("sel")]
            .node
            .label,
        "gcp-agent-2"
    );
    update(&mut app, ch('e'), now());
    assert_eq!(app.rows().len(), all);
}

#[test]
fn selection_survives_a_delta() {
    let mut app = base(80, 24);
    select(&mut app, "prod/payments/worker");
    let before = app.cursor(View::Tree);
    // dmz (drawn above gcp) loses a workload: the row index moves, the selection does not.
    let fx = update(
        &mut app,
        Msg::Stream {
            daemon: 2,
            msg: WatchMessage {
                revision: 2,
                daemon_time_ms: now().timestamp_millis(),
                body: Some(Body::Delta(Delta {
                    removes: vec![format!("svid:{TD}/trustdeck/agent/dmz/edge-1#e-3e02")],
                    ..Default::default()
                })),
            },
        },
        now(),
    );
    assert_eq!(fx, vec![Effect::Redraw]);
    assert_eq!(app.cursor(View::Tree), before - 1);
    assert_eq!(
        app.tree().nodes[app.selected_node().expect("sel")]
            .node
            .label,
        "prod/payments/worker"
    );
}

#[test]
fn revision_gap_resubscribes() {
    let mut app = base(80, 24);
    let fx = update(
        &mut app,
        Msg::Stream {
            daemon: 1,
            msg: WatchMessage {
                revision: 7,
                daemon_time_ms: 0,
                body: Some(Body::Delta(Delta::default())),
            },
        },
        now(),
    );
    assert_eq!(fx, vec![Effect::Resubscribe(1)]);
}

#[test]
fn connection_loss_redraws() {
    let mut app = base(80, 24);
    let fx = update(
        &mut app,
        Msg::Conn {
            daemon: 2,
            conn: DaemonConn::Lost {
                since: now(),
                error: "eof".into(),
            },
        },
        now(),
    );
    assert_eq!(fx, vec![Effect::Redraw]);
    assert!(!app.health().unreachable.is_empty());
}
#[test]
fn mouse_only_when_enabled() {
    let click = |row| {
        Msg::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 10,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    let mut app = base(80, 24);
    let area = layout::list_area(
        layout::screen((80, 24)),
        View::Tree,
        app.content(View::Tree),
    );
    assert!(update(&mut app, click(area.y + 3), now()).is_empty());
    assert_eq!(app.cursor(View::Tree), 0);
    app.mouse = true;
    update(&mut app, click(area.y + 3), now());
    assert_eq!(app.cursor(View::Tree), 3);
    let wheel = Msg::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 10,
        row: 10,
        modifiers: KeyModifiers::NONE,
    });
    update(&mut app, wheel, now());
    assert_eq!(app.cursor(View::Tree), 6);
}

#[test]
fn help_is_generated_from_the_keymap() {
    let mut app = base(160, 200);
    update(&mut app, ch('?'), now());
    let l = lines(&draw(&app, 160, 200, false)).join("\n");
    for b in BINDINGS {
        assert!(l.contains(b.keys), "help lacks keys {:?}", b.keys);
        assert!(l.contains(b.help), "help lacks {:?}", b.help);
    }
    for c in COMMANDS {
        for n in c.names {
            assert!(l.contains(&format!(":{n}")), "help lacks :{n}");
        }
        assert!(l.contains(c.help));
    }
    // The footer hints come from the same map.
    let app = base(80, 24);
    let l = lines(&draw(&app, 80, 24, false));
    let footer = l.last().expect("footer");
    for b in trustdeck_console::app::keymap(Mode::Normal, View::Tree) {
        if !b.hint.is_empty() && footer.contains(b.hint) {
            assert!(footer.contains(&format!("{} {}", b.keys, b.hint)));
        }
    }
    assert!(footer.contains("? help"));
}

#[test]
fn no_tmux_prefix_bindings() {
    for b in BINDINGS {
        for k in b.codes {
            if k.mods.contains(KeyModifiers::CONTROL) {
                assert!(
                    !matches!(k.code, KeyCode::Char('a' | 'b' | 'd')),
                    "{} collides with a tmux/screen prefix",
                    b.keys
                );
            }
        }
    }
}
