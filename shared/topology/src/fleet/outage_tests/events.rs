//! The events the console records: derived ones once each, replays marked, stable keys.

use super::*;

#[test]
fn renewal_overdue_and_expiry_are_alerts_and_events_once_per_certificate() {
    let mut f = demo(true);
    lose(&mut f, D_DMZ, 1010);
    let th = Thresholds::default();
    let t = f.tree();
    let a = t.by_id["svid:w1#a"];
    // 300 s SVIDs (received 10 s after not_before): renewal due at 1155, overdue at 1170.
    assert_eq!(f.node_alert(&t, a, at(1169)), None);
    assert_eq!(
        f.node_alert(&t, a, at(1170)),
        Some(NodeAlert::RenewalOverdue { since: 1170 })
    );
    assert_eq!(
        f.node_level(&t, a, at(1170), &th),
        Level::Warning,
        "before the TTL thresholds"
    );
    let h = f.health(&t, at(1170), &th);
    assert!(
        h.reasons.iter().any(|r| r.contains("renewal overdue")),
        "{:?}",
        h.reasons
    );
    let n0 = f.events_total;
    assert_eq!(f.derive_events(&t, at(1185)), 3, "a, b and c");
    assert_eq!(f.derive_events(&t, at(1186)), 0, "once");
    let late: Vec<&FleetEvent> = f.events.iter().skip(n0 as usize).collect();
    assert!(
        late.iter()
            .all(|e| e.event.kind_wire() == EventKind::SvidRenewalLate
                && e.event.severity_wire() == Severity::Warning
                && !e.replayed)
    );
    assert_eq!(late[0].event.node_id, "svid:w1#a");
    assert_eq!(late[0].key, "console:svid-renewal-late:svid:w1#a:1300");
    // a is renewed: a new certificate, no alert; b and c expire (once each).
    let d = delta(
        2,
        1200,
        Delta {
            upserts: vec![svid("svid:w1#a", 1200, 1500)],
            ..Default::default()
        },
    );
    f.apply(D_W1, d, at(1200)).unwrap();
    let t = f.tree();
    assert_eq!(f.node_alert(&t, t.by_id["svid:w1#a"], at(1200)), None);
    let expired = |f: &Fleet| -> Vec<String> {
        f.events
            .iter()
            .filter(|e| e.event.kind_wire() == EventKind::SvidExpired)
            .inspect(|e| assert_eq!(e.event.severity_wire(), Severity::Error))
            .map(|e| e.event.node_id.clone())
            .collect()
    };
    f.derive_events(&t, at(1315));
    assert_eq!(expired(&f), vec!["svid:w1#b"]);
    f.derive_events(&t, at(1325));
    f.derive_events(&t, at(1326));
    assert_eq!(expired(&f), vec!["svid:w1#b", "svid:w1#c"], "once each");
    assert_eq!(
        f.node_alert(&t, t.by_id["svid:w1#c"], at(1325)),
        Some(NodeAlert::Expired { at: 1320 })
    );
}

#[test]
fn replayed_history_is_marked_and_keys_are_stable() {
    let hist = |seq: u64| Event {
        seq,
        at_ms: 900_000,
        severity: Severity::Info.into(),
        kind: EventKind::X509Activated.into(),
        message: format!("event {seq}"),
        ..Default::default()
    };
    // A daemon first reached now: its history is a replay.
    let mut first = snap(
        1,
        DaemonRole::Downstream,
        "gcp",
        "spiffe://td/gcp",
        vec![],
        Some(ConnectivityState::Connected),
    );
    let mut f2 = Fleet::new([(
        "gcp".into(),
        "e".into(),
        DaemonRole::Downstream,
        "gcp".into(),
    )]);
    if let Some(Body::Snapshot(s)) = &mut first.body {
        s.events = vec![hist(1), hist(2)];
        if let Some(i) = &mut s.identity {
            i.started_at = 777;
        }
    }
    f2.apply(0, first.clone(), at(1000)).unwrap();
    let keys: Vec<(&str, bool)> = f2
        .events
        .iter()
        .map(|e| (e.key.as_str(), e.replayed))
        .collect();
    assert_eq!(keys, vec![("gcp:777:1", true), ("gcp:777:2", true)]);
    // A delta is news.
    let d = delta(
        2,
        1001,
        Delta {
            events: vec![hist(3)],
            ..Default::default()
        },
    );
    f2.apply(0, d, at(1001)).unwrap();
    assert_eq!(
        (f2.events[2].key.as_str(), f2.events[2].replayed),
        ("gcp:777:3", false)
    );
    // Lost and back: what happened meanwhile is news too, and the console says it is back.
    lose(&mut f2, 0, 1010);
    if let Some(Body::Snapshot(s)) = &mut first.body {
        s.events = vec![hist(1), hist(2), hist(3), hist(4)];
    }
    first.revision = 7;
    f2.apply(0, first, at(1030)).unwrap();
    let tail: Vec<(&str, bool, &str)> = f2
        .events
        .iter()
        .skip(3)
        .map(|e| (e.key.as_str(), e.replayed, e.event.kind_wire().as_str()))
        .collect();
    assert_eq!(
        tail,
        vec![
            ("console:unreachable:gcp:1010", false, "console-unreachable"),
            ("gcp:777:4", false, "x509-activated"),
            ("console:reconnected:gcp:1030", false, "console-reconnected"),
        ]
    );
    assert!(
        f2.events
            .back()
            .unwrap()
            .event
            .message
            .contains("after 20s")
    );
}

#[test]
fn derived_keys_are_forgotten_after_their_loss_ended() {
    // An upstream that flaps for a long run: each loss is one JWT event, and the keys that
    // keep it once are not kept forever.
    let mut f = demo(true);
    let mut rev = 1;
    for k in 0..50 {
        let t0 = 10_000 + k * 7200;
        rev += 1;
        set_link(&mut f, D_DMZ, (rev, t0), ConnectivityState::Lost, t0);
        let t = f.tree();
        f.derive_events(&t, at(t0));
        f.derive_events(&t, at(t0 + 1));
        rev += 1;
        set_link(
            &mut f,
            D_DMZ,
            (rev, t0 + 60),
            ConnectivityState::Connected,
            t0 + 60,
        );
        let t = f.tree();
        f.derive_events(&t, at(t0 + 60));
    }
    let jwt = f
        .events
        .iter()
        .filter(|e| e.event.kind_wire() == EventKind::JwtUnavailable)
        .count();
    assert_eq!(jwt, 50, "one per loss");
    // What is remembered is what holds now or held in the last hour: the last loss's key,
    // and the SVIDs that expired (still shown), not one key per loss ever seen.
    let jwt_keys = f
        .derived
        .keys()
        .filter(|k| k.starts_with("console:jwt-unavailable:"))
        .count();
    assert_eq!(jwt_keys, 1, "bounded: {:?}", f.derived);
}

#[test]
fn an_svid_expired_for_hours_is_recorded_once() {
    // The dmz agent is lost with its last-known SVIDs: they expire at 1300-1320 and stay
    // shown; the console ticks on for hours.
    let mut f = demo(true);
    lose(&mut f, D_W1, 1010);
    let t = f.tree();
    for s in (1000..20_000).step_by(10) {
        f.derive_events(&t, at(s));
    }
    let mut expired: Vec<&str> = f
        .events
        .iter()
        .filter(|e| e.event.kind_wire() == EventKind::SvidExpired)
        .map(|e| e.event.node_id.as_str())
        .collect();
    expired.sort_unstable();
    // Once per certificate, however long it stays expired: the three workload SVIDs, the
    // node agent's SVID and both agents' own.
    assert_eq!(
        expired,
        [
            "agent:node",
            "agent:w1",
            "svid:node#ds",
            "svid:w1#a",
            "svid:w1#b",
            "svid:w1#c"
        ]
    );
}

/// The console's own events are on the console's clock, and its connection events name the
/// daemon's own node (so the console can show it).
#[test]
fn console_events_say_whose_clock_and_name_the_daemons_node() {
    let mut f = demo(true);
    let n0 = f.events.len();
    lose(&mut f, D_DMZ, 1010);
    lose(&mut f, D_W1, 1010);
    let t = f.tree();
    f.derive_events(&t, at(1400));
    let new: Vec<&FleetEvent> = f.events.iter().skip(n0).collect();
    assert!(!new.is_empty());
    assert!(
        new.iter().all(|e| e.recorder == Recorder::Console),
        "{new:?}"
    );
    let node_of = |d: &str| {
        new.iter()
            .find(|e| e.daemon == d && e.event.kind_wire() == EventKind::ConsoleUnreachable)
            .map(|e| e.event.node_id.as_str())
    };
    assert_eq!(node_of("dmz"), Some(DMZ));
    assert_eq!(node_of("dmz-w1"), Some("agent:w1"));
    // What the daemons sent is on their clock.
    assert!(
        f.events
            .iter()
            .take(n0)
            .all(|e| e.recorder == Recorder::Daemon)
    );
}

/// An agent that cannot reach its server cannot renew its own SVID either: the overdue
/// renewal is still an event, though the agent's row shows the lost server.
#[test]
fn an_agent_that_lost_its_server_still_gets_its_renewal_overdue_event() {
    let mut f = demo(true);
    set_link(&mut f, D_W1, (2, 1010), ConnectivityState::Lost, 1010);
    let t = f.tree();
    let agent = t.by_id["agent:w1"];
    // A 3000 s SVID received at 10: renewal due at 1505, overdue 150 s later.
    assert_eq!(
        f.node_alert(&t, agent, at(1700)),
        Some(NodeAlert::ServerLost { since: 1010 })
    );
    f.derive_events(&t, at(1700));
    let late: Vec<&str> = f
        .events
        .iter()
        .filter(|e| e.event.kind_wire() == EventKind::SvidRenewalLate)
        .map(|e| e.event.node_id.as_str())
        .collect();
    assert!(late.contains(&"agent:w1"), "{late:?}");
}

/// Event number `seq` of a daemon's history.
fn hist(seq: u64) -> Event {
    Event {
        seq,
        at_ms: 900_000,
        severity: Severity::Info.into(),
        kind: EventKind::X509Activated.into(),
        message: format!("event {seq}"),
        ..Default::default()
    }
}

/// A dmz snapshot at `rev` from a daemon started at `started_at`, with `events` as its history.
fn dmz_with_events(rev: u64, started_at: i64, events: Vec<Event>) -> WatchMessage {
    let mut m = snap(
        rev,
        DaemonRole::Downstream,
        "dmz",
        "spiffe://td/dmz",
        dmz_nodes(),
        Some(ConnectivityState::Connected),
    );
    if let Some(Body::Snapshot(s)) = &mut m.body {
        s.events = events;
        if let Some(id) = s.identity.as_mut() {
            id.started_at = started_at;
        }
    }
    m
}

/// What a daemon's events already said is remembered per daemon, not looked up in the bounded
/// event list: once other daemons' events have pushed its own out, a resubscription still does
/// not record its history again.
#[test]
fn a_resubscription_does_not_repeat_history_pushed_out_of_the_event_list() {
    let mut f = demo(true);
    let with_events = |rev: u64, events: Vec<Event>| dmz_with_events(rev, 0, events);
    f.apply(D_DMZ, with_events(2, vec![hist(1), hist(2)]), at(1001))
        .unwrap();
    // The upstream is chatty: the dmz's events leave the list.
    let chatter: Vec<Event> = (1..=FLEET_EVENTS as u64).map(hist).collect();
    let d = delta(
        2,
        1002,
        Delta {
            events: chatter,
            ..Default::default()
        },
    );
    f.apply(D_UP, d, at(1002)).unwrap();
    assert!(f.events.iter().all(|e| e.daemon != "dmz"));
    lose(&mut f, D_DMZ, 1010);
    let n0 = f.events_total;
    f.apply(
        D_DMZ,
        with_events(9, vec![hist(1), hist(2), hist(3)]),
        at(1030),
    )
    .unwrap();
    let news: Vec<&str> = f
        .events
        .iter()
        .skip(f.events.len() - (f.events_total - n0) as usize)
        .filter(|e| e.recorder == Recorder::Daemon)
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(news.len(), 1, "{news:?}");
    assert!(news[0].ends_with(":3"), "{news:?}");
}

/// A daemon that restarted and got past its old event count before the console reconnected:
/// its new history is new, told by its start time (not by its numbers going down).
#[test]
fn a_restarted_daemon_s_history_is_new_even_when_its_numbers_passed_the_old_ones() {
    let mut f = demo(true);
    let with_events = dmz_with_events;
    f.apply(D_DMZ, with_events(2, 100, vec![hist(1), hist(2)]), at(1001))
        .unwrap();
    lose(&mut f, D_DMZ, 1010);
    let n0 = f.events_total;
    let restarted = (1..=5).map(hist).collect();
    f.apply(D_DMZ, with_events(3, 1020, restarted), at(1030))
        .unwrap();
    let news = f
        .events
        .iter()
        .skip(f.events.len() - (f.events_total - n0) as usize)
        .filter(|e| e.recorder == Recorder::Daemon)
        .count();
    assert_eq!(news, 5);
}
