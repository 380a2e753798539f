//! Whole-console snapshots on ratatui's `TestBackend` (every view, at 80×24 and 160×48, with
//! colour on and off), style checks, and tests of `update` (keys, filter, commands,
//! collapse/expand, selection across deltas, revision gaps, the generated help).
//!
//! The fleet and the helpers are in [`fixture`], shared with the other console tests.

mod fixture;

use fixture::*;

/// Snapshots one screen (insta names the file after this test binary).
fn snap(name: &str, app: &App, w: u16, h: u16) {
    let plain = screen(name, app, w, h);
    insta::assert_snapshot!(name, plain);
}

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

#[test]
fn tree_view() {
    for (w, h) in SIZES {
        snap(&format!("tree_{w}x{h}"), &base(w, h), w, h);
    }
}

#[test]
fn tree_view_scrolled_to_the_end() {
    let mut app = base(80, 24);
    update(&mut app, ch('G'), now());
    snap("tree_end_80x24", &app, 80, 24);
}

#[test]
fn expiring_view() {
    for (w, h) in SIZES {
        snap(
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
        snap(
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
        snap(
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
        snap(
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
    snap("detail_loading_80x24", &detail_app(80, 24, false), 80, 24);
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
        snap(&format!("help_{w}x{h}"), &app, w, h);
    }
}

#[test]
fn filter_mode() {
    for (w, h) in SIZES {
        let mut app = base(w, h);
        typed(&mut app, "/payments");
        assert_eq!(app.mode, Mode::Filter);
        snap(&format!("filter_{w}x{h}"), &app, w, h);
    }
}

#[test]
fn command_mode() {
    for (w, h) in SIZES {
        let mut app = base(w, h);
        typed(&mut app, ":se");
        assert_eq!(app.mode, Mode::Command);
        snap(&format!("command_{w}x{h}"), &app, w, h);
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
    snap("unknown_command_80x24", &app, 80, 24);
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
    snap("too_small_79x24", &base(79, 24), 79, 24);
    // The message says q quits: it does, at any size.
    let mut app = base(40, 10);
    let fx = update(&mut app, key(KeyCode::Char('q')), now());
    assert!(fx.iter().any(|e| matches!(e, Effect::Quit)), "{fx:?}");
}

#[test]
fn unreachable_daemon_is_stale() {
    for (w, h) in SIZES {
        let app = unreachable(w, h);
        let l = lines(&draw(&app, w, h, false)).join("\n");
        // Counted from the loss (40 s ago), not from the last message (45 s ago).
        assert!(l.contains("STALE 40s"), "{l}");
        assert!(l.contains("daemons 2/3 live"));
        snap(&format!("unreachable_{w}x{h}"), &app, w, h);
    }
}

#[test]
fn upstream_lost_on_a_downstream() {
    let app = with_view(base(160, 48), View::Segments);
    let l = lines(&draw(&app, 160, 48, false)).join("\n");
    assert!(l.contains(
        "upstream       ✗ lost since 2026-11-24 07:07:03Z (5m 00s): tls handshake: connection reset by peer"
    ));
    // A loss that happened is a fact, with its moment.
    assert!(l.contains(
        "upstream lost since 2026-11-24 07:07:03Z → X.509 continues until 2026-11-24 09:12:03Z (in 2h 00m); JWT stopped"
    ));
    assert!(l.contains(
        "upstream lost now → X.509 continues until 2026-11-24 18:12:03Z (in 11h 00m), JWT stops now"
    ));
    assert!(l.contains("server lost now → workloads fail at 2026-11-24 07:14:03Z (in 2m 00s)"));
    let small = base(80, 24);
    let l = lines(&draw(&small, 80, 24, false)).join("\n");
    assert!(l.contains("✗ lost 5m 00s"), "{l}");
    assert!(l.contains("X.509 2h 00m, JWT stopped"), "{l}");
}

// ---------------------------------------------------------------------------------------------
// Colour

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

// ---------------------------------------------------------------------------------------------
// update

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
    let mut app = base(160, 120);
    update(&mut app, ch('?'), now());
    let l = lines(&draw(&app, 160, 120, false)).join("\n");
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

/// `trustdeck status` (JSON and table) and `trustdeck watch` lines are contracts that scripts
/// read: their text must not change by accident.
#[test]
fn status_and_watch_output_is_stable() {
    use trustdeck_console::status;
    let th = Thresholds::default();
    for (name, f) in [
        ("status_base", fleet(2)),
        ("status_unreachable", unreachable_fleet()),
    ] {
        let report = f.status_report(now(), &th);
        let json = serde_json::to_string_pretty(&report).expect("report JSON");
        insta::assert_snapshot!(format!("{name}_json"), json);
        insta::assert_snapshot!(format!("{name}_table"), status::table(&f, now(), &th));
        let (events, _) = status::event_lines(&f, 0);
        insta::assert_snapshot!(format!("{name}_watch_events"), events.join("\n"));
    }
}

/// What a daemon newer than the console might send: a role, node state, key backend, link
/// state, severity and event kind the console does not know.
fn from_a_newer_daemon() -> WatchMessage {
    let mut future = node(
        "x509:f00d",
        &format!("server:{}", server_id("gcp")),
        NodeKind::X509Authority,
        "future authority",
        "",
        "active",
        (-H, 5 * H),
        ("pkcs11", ""),
        "gcp",
    );
    future.state = 77;
    future.key_storage = Some(KeyStorage {
        backend: 66,
        detail: String::new(),
        ..Default::default()
    });
    WatchMessage {
        revision: 2,
        daemon_time_ms: now().timestamp_millis(),
        body: Some(Body::Delta(Delta {
            upserts: vec![future],
            upstream: Some(Connectivity {
                configured: true,
                state: 12,
                ..Default::default()
            }),
            events: vec![Event {
                seq: 3,
                at_ms: now().timestamp_millis(),
                severity: 44,
                kind: 555,
                message: "news from the future".into(),
                ..Default::default()
            }],
            identity: Some(DaemonIdentity {
                name: "gcp".into(),
                role: 9,
                segment: "gcp".into(),
                spiffe_id: server_id("gcp"),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// Values the console does not know draw as "unknown" in every view and in `status`; nothing
/// panics and nothing is dropped.
#[test]
fn values_from_a_newer_daemon_show_as_unknown() {
    let newer = || {
        let mut app = base(160, 48);
        let msg = from_a_newer_daemon();
        assert_eq!(
            update(&mut app, Msg::Stream { daemon: 1, msg }, now()),
            vec![Effect::Redraw]
        );
        app
    };
    let screen = |app: &App| lines(&draw(app, 160, 48, false));
    let row = |lines: &[String], what: &str| {
        lines
            .iter()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what} is shown"))
            .clone()
    };
    let tree = row(&screen(&newer()), "future authority");
    assert!(tree.contains("unknown"), "{tree}");
    let event = row(
        &screen(&with_view(newer(), View::Events)),
        "news from the future",
    );
    let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words(&event).contains("· unknown gcp unknown news"),
        "{event}"
    );
    let daemon = row(&screen(&with_view(newer(), View::Daemons)), "gcp-server");
    assert!(
        words(&daemon).starts_with("gcp unknown gcp ") && daemon.contains("✗ unknown"),
        "{daemon}"
    );
    let mut f = fleet(2);
    f.apply(1, from_a_newer_daemon(), now()).expect("delta");
    let table = trustdeck_console::status::table(&f, now(), &Thresholds::default());
    assert!(
        table.contains("  gcp                  unknown    gcp"),
        "{table}"
    );
    assert!(table.contains("future authority  [unknown]"), "{table}");
}

// ---------------------------------------------------------------------------------------------
// Outage states: the dmz server stopped (stale), never reached, and failing

/// The dmz server lost 20 minutes ago: one of its SVIDs expired 8 s ago (workloads are
/// failing), another is past renewal.
fn dmz_failing_fleet() -> Fleet {
    let mut f = fleet(20 * M + 5);
    let (a1, _) = agent("dmz", "edge-1", "dmz-agent-1", (0, 0));
    let cache = svid(&a1, "e-3e03", "prod/edge/cache", (-60 * M, -8), "dmz");
    let msg = WatchMessage {
        revision: 2,
        daemon_time_ms: at(-20 * M - 5).timestamp_millis() + 2000,
        body: Some(Body::Delta(Delta {
            upserts: vec![cache],
            ..Default::default()
        })),
    };
    f.apply(2, msg, at(-20 * M - 5)).expect("delta");
    lose(&mut f, 2, 20 * M, "keepalive timed out");
    f
}

#[test]
fn outage_stale_downstream() {
    let base_nodes = base(160, 48).tree().nodes.len();
    for (w, h) in SIZES {
        let app = app_sized(dmz_stale_fleet(), w, h);
        assert_eq!(
            app.tree().nodes.len(),
            base_nodes,
            "the tree keeps its shape"
        );
        let l = lines(&draw(&app, w, h, false)).join("\n");
        assert!(l.contains("UNREACHABLE"), "{l}");
        assert!(!l.contains("(in -"), "{l}");
        snap(&format!("outage_stale_{w}x{h}"), &app, w, h);
    }
    let app = with_view(app_sized(dmz_stale_fleet(), 160, 48), View::Segments);
    let l = lines(&draw(&app, 160, 48, false)).join("\n");
    // The intermediate's real not_after, the loss as a fact, the upstream link last-known.
    assert!(
        l.contains(
            "server unreachable since 2026-11-24 07:10:33Z (console); 1 SVID past renewal; first failure at 2026-11-24 07:37:03Z (in 25m 00s)"
        ),
        "{l}"
    );
    assert!(
        l.contains("X.509 continues until 2026-11-24 09:12:03Z (in 2h 00m); JWT stopped (last known, as of 07:10:33Z)"),
        "{l}"
    );
    assert!(
        l.contains("last known: lost since 2026-11-24 07:07:03Z (as of 07:10:33Z)"),
        "{l}"
    );
    snap("outage_stale_segments_160x48", &app, 160, 48);
}

/// Wherever a window sentence (or the strip's cell) is shown, the moment workloads fail is
/// there with its seconds, and the sentence with its `in …`.
#[test]
fn outage_failure_time_at_every_size() {
    for (w, h) in [(80, 24), (120, 40), (160, 48), (200, 60)] {
        let stale = app_sized(dmz_stale_fleet(), w, h);
        // Not the tree's EXPIRES column: the window's words.
        let l = lines(&draw(&stale, w, h, false)).join("\n");
        assert!(
            l.contains("fails 07:37:03Z") || l.contains("failure at 07:37:03Z"),
            "{w}x{h}: {l}"
        );
        let l = lines(&draw(&with_view(stale, View::Segments), w, h, false)).join("\n");
        assert!(l.contains("07:37:03Z (in 25m 00s)"), "{w}x{h}: {l}");
        // Never reached: nothing is known of its workloads, and it says so; the others'
        // moments are there.
        let never = app_sized(dmz_never_reached_fleet(), w, h);
        let l = lines(&draw(&never, w, h, false)).join("\n");
        assert!(
            l.contains("no SVIDs known") || l.contains("no workload SVIDs known"),
            "{w}x{h}: {l}"
        );
        let l = lines(&draw(&with_view(never, View::Segments), w, h, false)).join("\n");
        assert!(l.contains("no workload SVIDs known"), "{w}x{h}: {l}");
        assert!(l.contains("07:14:03Z (in 2m 00s)"), "{w}x{h}: {l}");
    }
}

#[test]
fn outage_never_reached_downstream() {
    for (w, h) in SIZES {
        let app = app_sized(dmz_never_reached_fleet(), w, h);
        let l = lines(&draw(&app, w, h, false)).join("\n");
        assert!(l.contains("UNREACHABLE"), "{l}");
        assert!(
            !l.contains("STALE"),
            "nothing was ever heard, nothing is stale: {l}"
        );
        snap(&format!("outage_never_reached_{w}x{h}"), &app, w, h);
    }
    let app = with_view(
        app_sized(dmz_never_reached_fleet(), 160, 48),
        View::Segments,
    );
    let l = lines(&draw(&app, 160, 48, false)).join("\n");
    assert!(l.contains("NEVER REACHED"), "{l}");
    assert!(l.contains("server never reached (console)"), "{l}");
    assert!(
        l.contains("X.509 continues until 2026-11-24 09:12:03Z (in 2h 00m) (upstream's record)"),
        "{l}"
    );
    snap("outage_never_reached_segments_160x48", &app, 160, 48);
    let daemons = with_view(app_sized(dmz_never_reached_fleet(), 160, 48), View::Daemons);
    let l = lines(&draw(&daemons, 160, 48, false)).join("\n");
    assert!(l.contains("✗ never reached"), "{l}");
}

#[test]
fn outage_failing_and_renewal_overdue() {
    for (w, h) in SIZES {
        let app = app_sized(dmz_failing_fleet(), w, h);
        let l = lines(&draw(&app, w, h, false)).join("\n");
        assert!(
            !l.contains("(in -"),
            "a passed moment is not a countdown: {l}"
        );
        snap(&format!("outage_failing_{w}x{h}"), &app, w, h);
    }
    let app = app_sized(dmz_failing_fleet(), 160, 48);
    let l = lines(&draw(&app, 160, 48, false));
    let cache = l
        .iter()
        .find(|r| r.contains("prod/edge/cache"))
        .expect("the expired SVID");
    assert!(cache.contains("expired"), "{cache}");
    let proxy = l
        .iter()
        .find(|r| r.contains("SVID prod/edge/proxy"))
        .expect("the SVID past renewal");
    assert!(
        proxy.contains("renewal overdue") && proxy.contains("! warning"),
        "{proxy}"
    );
    let app = with_view(app_sized(dmz_failing_fleet(), 160, 48), View::Segments);
    let l = lines(&draw(&app, 160, 48, false)).join("\n");
    assert!(l.contains("failing since 2026-11-24 07:11:55Z"), "{l}");
    snap("outage_failing_segments_160x48", &app, 160, 48);
}

/// The console records renewal overdue and expired once, on its one-second tick.
#[test]
fn outage_events_are_derived_once_on_the_tick() {
    let mut app = app_sized(dmz_failing_fleet(), 160, 48);
    let before = app.fleet.events_total;
    update(&mut app, Msg::Tick, now());
    let kinds: Vec<&str> = app
        .fleet
        .events
        .iter()
        .skip(before as usize)
        .map(|e| e.event.kind_wire().as_str())
        .collect();
    assert!(kinds.contains(&"svid-expired"), "{kinds:?}");
    assert!(kinds.contains(&"svid-renewal-late"), "{kinds:?}");
    let after = app.fleet.events_total;
    update(&mut app, Msg::Tick, now());
    assert_eq!(app.fleet.events_total, after, "once");
}
