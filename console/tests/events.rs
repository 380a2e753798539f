//! The events view: the detail popup, the jump to the node, the severity and daemon filters,
//! the typed `/` filter, the copy menu and `:dump`.

mod fixture;

use fixture::*;

/// The events view with the cursor on the event whose message contains `has`.
fn on_event(has: &str) -> App {
    let mut app = with_view(base(120, 30), View::Events);
    let pos = app
        .events()
        .iter()
        .position(|&i| app.fleet.events[i].event.message.contains(has))
        .expect("event");
    for _ in 0..pos {
        update(&mut app, ch('j'), now());
    }
    app
}

#[test]
fn enter_opens_the_event_in_full() {
    let mut app = on_event("renewal overdue");
    update(&mut app, key(KeyCode::Enter), now());
    assert_eq!(app.mode, Mode::Event);
    let s = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(s.contains("svid-renewal-late"), "{s}");
    assert!(s.contains("prod/payments/worker: renewal overdue (half-life passed 25m ago)"));
    assert!(s.contains("3m 00s ago"), "{s}");
    snap!("event_detail_120x30", &app, 120, 30);
    // `d` does the same; q closes without quitting.
    let mut app = on_event("renewal overdue");
    update(&mut app, ch('d'), now());
    assert_eq!(app.mode, Mode::Event);
    assert!(!update(&mut app, ch('q'), now()).contains(&Effect::Quit));
    assert_eq!((app.mode, app.view), (Mode::Normal, View::Events));
}

#[test]
fn an_event_without_a_node_says_so_once() {
    let mut app = on_event("JWT-SVID minting paused");
    update(&mut app, key(KeyCode::Enter), now());
    let s = lines(&draw(&app, 120, 30, false)).join("\n");
    assert_eq!(s.matches("about no node").count(), 1, "{s}");
    update(&mut app, ch('t'), now());
    assert_eq!(app.mode, Mode::Event);
}

#[test]
fn t_jumps_to_the_events_node_from_the_detail_and_the_list() {
    let mut app = on_event("renewal overdue");
    update(&mut app, key(KeyCode::Enter), now());
    update(&mut app, ch('t'), now());
    assert_eq!((app.mode, app.view), (Mode::Normal, View::Tree));
    assert_eq!(app.selected_id(), Some(worker_id().as_str()));
    let mut app = on_event("renewal overdue");
    update(&mut app, ch('t'), now());
    assert_eq!(app.view, View::Tree);
    assert_eq!(app.selected_id(), Some(worker_id().as_str()));
}

#[test]
fn severity_and_daemon_filters_narrow_the_list_and_show_in_the_title() {
    let mut app = with_view(base(120, 30), View::Events);
    let all = app.len(View::Events);
    update(&mut app, ch('s'), now());
    let warn = app.len(View::Events);
    assert_eq!(warn, 3, "two warnings and one error");
    update(&mut app, ch('s'), now());
    assert_eq!(app.len(View::Events), 1);
    let s = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(s.contains("errors ·"), "{s}");
    update(&mut app, ch('s'), now());
    assert_eq!(app.len(View::Events), all);
    // f: only the selected event's daemon.
    update(&mut app, ch('f'), now());
    let d = app.event_filter.daemon.clone().expect("a daemon");
    assert!(
        app.events()
            .iter()
            .all(|&i| app.fleet.events[i].daemon == d)
    );
    snap!("events_daemon_filter_120x30", &app, 120, 30);
    update(&mut app, ch('f'), now());
    assert_eq!(app.len(View::Events), all);
}

#[test]
fn typed_filter_fields_apply_to_events() {
    let mut app = with_view(base(120, 30), View::Events);
    typed(&mut app, "/level:error");
    assert_eq!(app.len(View::Events), 1);
    update(&mut app, key(KeyCode::Esc), now());
    typed(&mut app, "/daemon:gcp");
    assert_eq!(app.len(View::Events), 2);
}

#[test]
fn ok_is_a_level_not_a_piece_of_join_token() {
    let mut app = base(80, 24);
    typed(&mut app, "/ok");
    // Every matching node is at level ok: none matched by a piece of a word.
    for &i in app.expiring() {
        let t = &app.tree().nodes[i];
        assert!(app.node_matches(i, now()), "{}", t.node.id);
    }
    let critical = app
        .expiring()
        .iter()
        .any(|&i| app.tree().nodes[i].node.label == "staging/search/indexer");
    assert!(!critical, "a critical SVID matched /ok");
}

#[test]
fn an_unknown_filter_field_is_a_clear_error() {
    let mut app = base(80, 24);
    typed(&mut app, "/colour:red");
    let s = lines(&draw(&app, 80, 24, false)).join("\n");
    assert!(s.contains("unknown filter field \"colour:\""), "{s}");
    assert_eq!(app.len(View::Tree), 0);
}

#[test]
fn filtered_panes_say_so() {
    let mut app = base(160, 48);
    typed(&mut app, "/segment:dmz");
    update(&mut app, key(KeyCode::Enter), now());
    let s = lines(&draw(&app, 160, 48, false)).join("\n");
    assert!(!s.contains("fleet-wide"), "{s}");
    assert!(s.contains("filtered /segment:dmz"), "{s}");
}

#[test]
fn agents_have_one_name_in_tree_and_expiring() {
    let app = with_view(base(160, 48), View::Expiring);
    let s = lines(&draw(&app, 160, 48, false)).join("\n");
    assert!(s.contains("gcp-agent-1"), "{s}");
    assert!(!s.contains("/trustdeck/agent/gcp/node"), "{s}");
}

#[test]
fn copy_menu_offers_what_the_node_has_and_copies_over_osc52() {
    let mut app = base(120, 30);
    // The upstream reports its root's key as the server does: `pkcs11:token=…;label=…`.
    let mut root = upstream_nodes()
        .into_iter()
        .find(|n| n.label == "root CA 2026")
        .expect("root");
    if let Some(k) = &mut root.key_storage {
        k.detail = "pkcs11:token=trustdeck-root;label=root 2026".into();
    }
    let delta = WatchMessage {
        revision: 2,
        daemon_time_ms: now().timestamp_millis(),
        body: Some(Body::Delta(Delta {
            upserts: vec![root],
            ..Default::default()
        })),
    };
    update(
        &mut app,
        Msg::Stream {
            daemon: 0,
            msg: delta,
        },
        now(),
    );
    select(&mut app, "root CA 2026");
    update(&mut app, ch('y'), now());
    assert_eq!(app.mode, Mode::Copy);
    let whats: Vec<&str> = app
        .copy_menu
        .as_ref()
        .expect("menu")
        .items
        .iter()
        .map(|i| i.what)
        .collect();
    assert_eq!(
        whats,
        vec!["serial", "PKCS#11 URI", "node id", "CLI command"]
    );
    snap!("copy_menu_120x30", &app, 120, 30);
    let fx = update(&mut app, key(KeyCode::Enter), now());
    assert!(fx.contains(&Effect::Copy {
        what: "serial".into(),
        text: "4f:1a:9c:02".into()
    }));
    assert_eq!(app.mode, Mode::Normal);
    let s = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(s.contains("copied serial 4f:1a:9c:02"), "{s}");
}

/// A workload SVID as its agent publishes it (held, with the leaf's serial and issuer key id):
/// the copy menu offers the serial, and the issuer path reaches the root from the node alone,
/// even when the certificate could not be fetched.
#[test]
fn an_agents_svid_offers_its_serial_and_issuer_path() {
    let mut app = base(120, 30);
    let mut worker = downstream_nodes("gcp")
        .into_iter()
        .find(|n| n.id == worker_id())
        .expect("worker");
    worker.state = wire::<NodeState>("held");
    worker.serial = "5c0ffee1".into();
    worker.issuer_key_id = "11aa41".into();
    let delta = WatchMessage {
        revision: 2,
        daemon_time_ms: now().timestamp_millis(),
        body: Some(Body::Delta(Delta {
            upserts: vec![worker],
            ..Default::default()
        })),
    };
    update(
        &mut app,
        Msg::Stream {
            daemon: 1,
            msg: delta,
        },
        now(),
    );
    assert!(app.show_in_tree(&worker_id(), now()));
    update(&mut app, ch('y'), now());
    let items = &app.copy_menu.as_ref().expect("menu").items;
    assert_eq!(items[0].what, "SPIFFE ID");
    assert!(
        items
            .iter()
            .any(|i| i.what == "serial" && i.text == "5c0ffee1"),
        "{items:?}"
    );
    update(&mut app, key(KeyCode::Esc), now());
    update(&mut app, ch('d'), now());
    update(
        &mut app,
        Msg::Detail {
            node_id: worker_id(),
            result: Err(DetailError::Rpc("keep-alive timed out".into())),
        },
        now(),
    );
    let doc = lines(&draw(&app, 120, 40, false)).join("\n");
    assert!(doc.contains("gcp intermediate 41"), "{doc}");
    assert!(doc.contains("is a root"), "{doc}");
    assert!(!doc.contains("issuer not known"), "{doc}");
}

#[test]
fn the_cli_command_uses_the_segments_admin_socket() {
    let mut app = base(120, 30);
    select(&mut app, "root CA 2026");
    let i = app.selected_node().expect("selected");
    assert_eq!(
        app.node_command(i).as_deref(),
        Some(
            "trustdeck-server bundle show --format pem --socket /run/trustdeck/upstream/admin.sock"
        )
    );
    // An SVID of a segment whose server is reached over TCP: no --socket.
    select(&mut app, "prod/payments/worker");
    let i = app.selected_node().expect("selected");
    assert_eq!(
        app.node_command(i).as_deref(),
        Some("trustdeck-server entry show --id e-7c22")
    );
}

#[test]
fn dump_writes_the_status_report_and_events_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = base(80, 24);
    typed(&mut app, ":dump incident.json");
    let fx = update(&mut app, key(KeyCode::Enter), now());
    let Some(Effect::Dump {
        path,
        contents,
        overwrite,
    }) = fx.into_iter().find(|e| matches!(e, Effect::Dump { .. }))
    else {
        panic!("no dump effect");
    };
    assert!(!overwrite);
    let target = trustdeck_console::dump::resolve(dir.path(), None, &path).expect("path");
    let (written, size) =
        trustdeck_console::dump::write(&target, &contents, false).expect("written");
    assert_eq!(written, dir.path().join("incident.json"));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&written).expect("read")).expect("json");
    assert_eq!(size, contents.len() as u64);
    assert_eq!(v["status"]["exit_code"], 2);
    assert_eq!(v["events"].as_array().map(Vec::len), Some(6));
    assert_eq!(v["events"][0]["type"], "event");
    let again = trustdeck_console::dump::write(&target, &contents, false);
    assert!(
        again
            .expect_err("exists")
            .to_string()
            .contains(":dump! overwrites")
    );
    assert!(trustdeck_console::dump::write(&target, "{}", true).is_ok());
    update(&mut app, Msg::Dumped(Ok((written.clone(), size))), now());
    let s = lines(&draw(&app, 80, 24, false)).join("\n");
    assert!(s.contains("dumped the fleet to"), "{s}");
    typed(&mut app, ":dump");
    update(&mut app, key(KeyCode::Enter), now());
    assert!(
        app.status
            .as_ref()
            .is_some_and(|s| s.text.contains("needs a file name"))
    );
}

/// An agent-like daemon whose link names its peer by address, as the agents do: every
/// mention of that address reads as the peer's fleet name, in every kind of event.
#[test]
fn event_messages_name_the_peer_at_every_mention() {
    let mut app = base(120, 30);
    let up = app.fleet.daemons[2]
        .upstream
        .as_mut()
        .expect("dmz upstream");
    up.peer = "server 127.0.0.1:41867".into();
    up.peer_spiffe_id = server_id("upstream");
    let fe = |kind: &str, message: &str| trustdeck_topology::fleet::FleetEvent {
        daemon: "dmz".into(),
        event: ev(9, -M, "warning", kind, message, ""),
        key: "k".into(),
        replayed: false,
        recorder: trustdeck_topology::fleet::Recorder::Daemon,
    };
    let degraded = fe(
        "upstream-degraded",
        "server 127.0.0.1:41867 degraded: server 127.0.0.1:41867 unreachable",
    );
    assert_eq!(
        app.event_message(&degraded),
        "server upstream degraded: server upstream unreachable"
    );
    let attested = fe(
        "attestation-ok",
        "attested to 127.0.0.1:41867 as spiffe://x",
    );
    assert_eq!(
        app.event_message(&attested),
        "attested to upstream as spiffe://x"
    );
}

/// During an outage the event detail says its daemon's state is last-known.
#[test]
fn the_event_detail_marks_an_unreachable_daemon() {
    let mut app = on_event("JWT-SVID minting paused");
    update(&mut app, key(KeyCode::Enter), now());
    let s = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(s.contains("dmz (segment dmz)"), "{s}");
    assert!(!s.contains("last-known"), "dmz is live here: {s}");
    app.fleet.set_conn(
        2,
        DaemonConn::Lost {
            since: at(-30),
            error: "keep-alive timed out".into(),
        },
        at(-30),
    );
    let s = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(s.contains("dmz (segment dmz), last-known"), "{s}");
}

/// At 120 columns the events view is the only list of events on screen, messages that fit are
/// whole, and two daemons whose names differ at the end are told apart.
#[test]
fn events_view_gives_the_message_the_room_and_names_in_full() {
    let app = with_view(base(120, 40), View::Events);
    let s = lines(&draw(&app, 120, 40, false)).join("\n");
    assert_eq!(
        s.matches("JWT-SVID minting paused").count(),
        1,
        "no events pane under the events view: {s}"
    );
    assert!(
        s.contains("upstream upstream.demo:8443: tls handshake: connection reset by peer"),
        "{s}"
    );
    let app = with_view(app_sized(two_agents_fleet(), 120, 40), View::Events);
    let s = lines(&draw(&app, 120, 40, false)).join("\n");
    assert!(s.contains("console cannot reach dmz-workloads-1: "), "{s}");
    assert!(s.contains(" dmz-workloads-1 "), "{s}");
    assert!(s.contains(" dmz-workloads-2 "), "{s}");
    snap!("events_two_agents_120x40", &app, 120, 40);
    // At 80 columns the names are still told apart.
    let app = with_view(app_sized(two_agents_fleet(), 80, 24), View::Events);
    let rows = lines(&draw(&app, 80, 24, false));
    let names: Vec<&str> = rows
        .iter()
        .filter(|r| r.contains("console cannot reach"))
        .map(|r| r.split_whitespace().nth(3).unwrap_or(""))
        .collect();
    assert_eq!(names.len(), 2, "{rows:#?}");
    assert_ne!(names[0], names[1], "{rows:#?}");
}

/// `:daemons` and the tree tell apart names that differ only at the end.
#[test]
fn daemons_and_tree_names_keep_their_end() {
    let app = with_view(app_sized(two_agents_fleet(), 80, 24), View::Daemons);
    let s = lines(&draw(&app, 80, 24, false)).join("\n");
    assert!(
        s.contains("dmz-workloads-1") && s.contains("dmz-workloads-2"),
        "{s}"
    );
    let app = base(160, 48);
    let rows = lines(&draw(&app, 160, 48, false));
    let worker = rows
        .iter()
        .find(|r| r.contains("SVID prod/payments/worker"))
        .expect("worker row");
    assert!(worker.contains("payments/worker "), "{worker}");
    let mut app = base(80, 24);
    update(&mut app, key(KeyCode::End), now());
    let rows = lines(&draw(&app, 80, 24, false));
    assert!(
        rows.iter()
            .any(|r| r.contains("SVID prod/") && r.contains("worker ")),
        "{rows:#?}"
    );
}

/// The console's own events are on its clock (the daemon's skew does not move their age), and
/// its connection events jump to the daemon's node.
#[test]
fn console_events_are_on_the_console_clock_and_jump_to_the_daemon() {
    let mut app = with_view(app_sized(dmz_stale_fleet(), 120, 30), View::Events);
    let pos = app
        .events()
        .iter()
        .position(|&i| app.fleet.events[i].event.kind_wire().as_str() == "console-unreachable")
        .expect("console-unreachable");
    for _ in 0..pos {
        update(&mut app, ch('j'), now());
    }
    update(&mut app, key(KeyCode::Enter), now());
    let s = lines(&draw(&app, 120, 30, false)).join("\n");
    // dmz's clock is 2 s ahead: on it the event would be 1m 32s old.
    assert!(s.contains("(console clock), 1m 30s ago"), "{s}");
    assert!(!s.contains("daemon clock"), "{s}");
    update(&mut app, ch('t'), now());
    assert_eq!(app.view, View::Tree);
    assert_eq!(
        app.selected_id(),
        Some(format!("server:{}", server_id("dmz")).as_str())
    );
}

/// `status --output table` names an agent as the console does: by the fleet name of the daemon
/// it is, not by the label its server gives it.
#[test]
fn the_status_table_names_agents_by_their_fleet_name() {
    use trustdeck_console::status;
    let mut f = fleet_with(2, &[("gcp-node-one", DaemonRole::Agent, "gcp")]);
    let mut m = snapshot(
        "gcp-node-one",
        "agent",
        "gcp",
        Vec::new(),
        None,
        Vec::new(),
        0,
        at(-2),
    );
    if let Some(Body::Snapshot(s)) = &mut m.body
        && let Some(id) = &mut s.identity
    {
        id.spiffe_id = format!("{TD}/trustdeck/agent/gcp/node-1");
    }
    f.apply(3, m, at(-2)).expect("agent snapshot");
    let table = status::table(&f, now(), &Thresholds::default());
    let named = |name: &str| {
        table
            .lines()
            .filter(|l| l.contains("spiffe://demo.trustdeck/trustdeck/agent/gcp/node-1"))
            .all(|l| l.contains(name))
    };
    assert!(named("gcp-node-one") && !named("gcp-agent-1"), "{table}");
}

/// Issue 13: the server publishes every audit record as an event naming its seq; the events
/// pane lists it with its text and the detail names the record to look up in `audit list`.
#[test]
fn an_audit_record_event_shows_its_text_and_its_seq() {
    let mut f = fleet(2);
    let text = "audit #42 uid:1000: authority.x509.taint 5f1e (ok)";
    let msg = WatchMessage {
        revision: 2,
        daemon_time_ms: at(-2).timestamp_millis(),
        body: Some(Body::Delta(Delta {
            events: vec![Event {
                audit_seq: 42,
                ..ev(9, -60, "info", "operator-action", text, "")
            }],
            ..Default::default()
        })),
    };
    f.apply(0, msg, at(-2)).expect("delta");
    let mut app = with_view(app_sized(f, 120, 30), View::Events);
    let list = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(list.contains(text), "{list}");
    let pos = app
        .events()
        .iter()
        .position(|&i| app.fleet.events[i].event.audit_seq == 42)
        .expect("the audit event is listed");
    for _ in 0..pos {
        update(&mut app, ch('j'), now());
    }
    update(&mut app, key(KeyCode::Enter), now());
    let s = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(s.contains("audit record"), "{s}");
    assert!(
        s.contains("#42 (trustdeck-server audit list shows it)"),
        "{s}"
    );
    assert!(s.contains(text), "{s}");
    // An event that is no audit record says nothing of one.
    let mut app = on_event("renewal overdue");
    update(&mut app, key(KeyCode::Enter), now());
    let s = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(!s.contains("audit record"), "{s}");
}
