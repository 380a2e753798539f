//! Text that scripts read, `trustdeck status` (JSON and table) and `trustdeck watch` lines,
//! and values from a newer daemon than the console shown as "unknown" there and in every view.

mod fixture;

use fixture::*;

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

/// The fleet file pins each daemon's SPIFFE ID: a daemon that says it is another cannot take
/// that daemon's name, and is flagged in health (the table, the header's reasons).
#[test]
fn a_pinned_spiffe_id_names_only_its_daemon() {
    use trustdeck_console::fleetfile::FleetFile;
    use trustdeck_console::status;
    let entry = |name: &str, role: &str| {
        format!(
            r#"{{"name": "{name}", "role": "{role}", "segment": "{name}", "admin": "unix:///run/{name}.sock", "spiffe_id": "{}"}}"#,
            server_id(name)
        )
    };
    let text = format!(
        r#"{{"servers": [{}, {}, {}]}}"#,
        entry("upstream", "upstream"),
        entry("gcp", "downstream"),
        entry("dmz", "downstream")
    );
    let targets = FleetFile::parse(&text, std::path::Path::new("demo.json"))
        .expect("fleet file")
        .targets()
        .expect("targets");
    let pinned = status::fleet_for(&targets);
    let mut f = fleet(2);
    for (d, ds) in pinned.daemons.iter().enumerate() {
        assert_eq!(ds.pinned_id.as_deref(), Some(server_id(&ds.name).as_str()));
        f.daemons[d].pinned_id = ds.pinned_id.clone();
    }
    // gcp says it is dmz.
    if let Some(i) = f.daemons[1].identity.as_mut() {
        i.spiffe_id = server_id("dmz");
    }
    let link = Connectivity {
        peer_spiffe_id: server_id("dmz"),
        ..Default::default()
    };
    assert_eq!(f.peer_name(&link), Some("dmz"), "not stolen by gcp");
    let table = status::table(&f, now(), &Thresholds::default());
    let flagged = format!(
        "gcp: says it is {} but the fleet file pins {}",
        server_id("dmz"),
        server_id("gcp")
    );
    assert!(table.contains(&flagged), "{table}");
}

/// A root server never reached: its segment's records come from its agents only (it has no
/// upstream), and nothing is "past renewal" when no SVID is known.
#[test]
fn a_root_never_reached_reads_plainly_in_the_table() {
    use trustdeck_console::status;
    let mut f = Fleet::new([(
        "gone".to_string(),
        "unix:///nonexistent.sock".to_string(),
        DaemonRole::Upstream,
        "root".to_string(),
    )]);
    lose(&mut f, 0, 5, "No such file or directory (os error 2)");
    let t = status::table(&f, now(), &Thresholds::default());
    assert!(t.contains("[NEVER REACHED: its agents' records]"), "{t}");
    assert!(!t.contains("upstream's"), "{t}");
    assert!(!t.contains("past renewal"), "{t}");
}
