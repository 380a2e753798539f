//! Outage states: a daemon the console cannot reach (stale), the dmz server stopped, never
//! reached, and failing; a downstream's lost upstream; the events the console derives.

mod fixture;

use fixture::*;

#[test]
fn unreachable_daemon_is_stale() {
    for (w, h) in SIZES {
        let app = unreachable(w, h);
        let l = lines(&draw(&app, w, h, false)).join("\n");
        // Counted from the loss (40 s ago), not from the last message (45 s ago).
        assert!(l.contains("STALE 40s"), "{l}");
        assert!(l.contains("daemons 2/3 live"));
        snap!(&format!("unreachable_{w}x{h}"), &app, w, h);
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
        snap!(&format!("outage_stale_{w}x{h}"), &app, w, h);
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
    snap!("outage_stale_segments_160x48", &app, 160, 48);
}

/// A stale holder's record stays in its row: the dmz intermediate says what dmz said (its
/// label, its key on disk), not the live upstream's record of what it issued.
#[test]
fn outage_stale_holder_keeps_its_row() {
    for (f, stale) in [(fleet(2), false), (dmz_stale_fleet(), true)] {
        let app = app_sized(f, 160, 48);
        let l = lines(&draw(&app, 160, 48, false));
        let row = l
            .iter()
            .find(|r| r.contains("x509:33cc17") || r.contains("dmz intermediate 17"))
            .unwrap_or_else(|| panic!("{}", l.join("\n")));
        assert!(row.contains("dmz intermediate 17"), "{row}");
        assert!(row.contains("disk"), "{row}");
        assert_eq!(row.contains("STALE"), stale, "{row}");
    }
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
        snap!(&format!("outage_never_reached_{w}x{h}"), &app, w, h);
    }
    let app = with_view(
        app_sized(dmz_never_reached_fleet(), 160, 48),
        View::Segments,
    );
    let l = lines(&draw(&app, 160, 48, false)).join("\n");
    assert!(l.contains("NEVER REACHED"), "{l}");
    assert!(l.contains("server never reached (console)"), "{l}");
    // No workload SVID is known of it: nothing is "past renewal".
    assert!(!l.contains("0 SVIDs past renewal"), "{l}");
    assert!(
        l.contains("X.509 continues until 2026-11-24 09:12:03Z (in 2h 00m) (upstream's record)"),
        "{l}"
    );
    snap!("outage_never_reached_segments_160x48", &app, 160, 48);
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
        snap!(&format!("outage_failing_{w}x{h}"), &app, w, h);
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
    snap!("outage_failing_segments_160x48", &app, 160, 48);
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

/// The segments view has a spare line per segment: a lost server's facts that one line cannot
/// hold (the SVIDs past renewal, the loss moments to the second) go on two lines there.
#[test]
fn the_segments_view_keeps_every_fact_of_a_lost_server() {
    for (w, h) in [(80, 24), (100, 30), (120, 40)] {
        let app = with_view(app_sized(dmz_failing_fleet(), w, h), View::Segments);
        let l = lines(&draw(&app, w, h, false)).join("\n");
        assert!(l.contains("past renewal"), "{w}x{h}:\n{l}");
        assert!(l.contains("06:52:03Z (console)"), "{w}x{h}:\n{l}");
        assert!(l.contains("failing since "), "{w}x{h}:\n{l}");
        assert!(l.contains("07:11:55Z"), "{w}x{h}:\n{l}");
    }
}

/// A stranded agent: the header, the status table and the daemons view say what it needs and
/// how to recover, and the fleet is critical.
#[test]
fn a_stranded_agent_says_it_needs_a_new_join_token() {
    let f = stranded_fleet();
    let table = trustdeck_console::status::table(&f, now(), &Thresholds::default());
    let line = table
        .lines()
        .find(|l| l.starts_with("  - dmz-workloads-1: "))
        .expect("the agent's reason");
    assert!(
        line.contains("stranded: needs a new join token (token used, server dmz)")
            && line.contains("recover: trustdeck-server token generate"),
        "{table}"
    );
    assert!(table.contains("upstream stranded since"), "{table}");
    let app = with_view(app_sized(stranded_fleet(), 160, 48), View::Daemons);
    let l = lines(&draw(&app, 160, 48, false)).join("\n");
    let row = l
        .lines()
        .find(|r| r.contains(" dmz-workloads-1 "))
        .expect("the agent's row");
    assert!(
        row.contains("stranded: needs a new join token; recover: trustdeck-server"),
        "{row}"
    );
    snap!("stranded_daemons_160x48", &app, 160, 48);
}
