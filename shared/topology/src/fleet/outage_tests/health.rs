//! One health word with its exit code; what is and is not a loss; node alerts.

use super::*;

#[test]
fn health_is_one_word_and_the_exit_code_follows_it() {
    let th = Thresholds {
        key_policy: false,
        ..Thresholds::default()
    };
    let mut f = demo(true);
    let t = f.tree();
    let h = f.health(&t, at(1010), &th);
    assert_eq!(
        (h.state(), h.exit_code()),
        (FleetHealth::Ok, 0),
        "{:?}",
        h.reasons
    );
    lose(&mut f, D_DMZ, 1010);
    let t = f.tree();
    let h = f.health(&t, at(1011), &th);
    assert_eq!(h.state(), FleetHealth::Unreachable);
    assert_eq!(h.exit_code(), 3);
    let r = f.status_report(at(1011), &th);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        (json["health"].as_str(), json["exit_code"].as_i64()),
        (Some("unreachable"), Some(3))
    );
    // The state stays the worst while the daemon is unreachable, even when more goes wrong.
    let h = f.health(&f.tree(), at(1200), &th);
    assert_eq!(h.state(), FleetHealth::Unreachable);
    assert!(
        h.level >= Level::Warning,
        "renewals overdue: {:?}",
        h.reasons
    );
    // Every state has its own code.
    for (s, c) in [
        (FleetHealth::Ok, 0),
        (FleetHealth::Warning, 1),
        (FleetHealth::Critical, 2),
        (FleetHealth::Unreachable, 3),
    ] {
        assert_eq!(s.exit_code(), c);
    }
}

#[test]
fn a_downstream_still_connecting_is_not_a_loss() {
    let mut f = demo(true);
    set_link(
        &mut f,
        D_DMZ,
        (2, 1001),
        ConnectivityState::Connecting,
        1000,
    );
    let t = f.tree();
    let th = Thresholds {
        key_policy: false,
        ..Thresholds::default()
    };
    assert_eq!(f.health(&t, at(1001), &th).state(), FleetHealth::Ok);
    let w = f.windows(&t, at(1001));
    assert!(matches!(
        window(&w, "dmz").upstream_outage(at(1001)),
        UpstreamOutage::IfLostNow { .. }
    ));
    f.derive_events(&t, at(1001));
    assert!(
        f.events
            .iter()
            .all(|e| e.event.kind_wire() != EventKind::JwtUnavailable)
    );
}

#[test]
fn an_agent_that_lost_its_server_says_so() {
    let mut f = demo(true);
    set_link(&mut f, D_W1, (2, 1020), ConnectivityState::Lost, 1020);
    let t = f.tree();
    let agent = t.by_id["agent:w1"];
    assert_eq!(
        f.node_alert(&t, agent, at(1030)),
        Some(NodeAlert::ServerLost { since: 1020 })
    );
    assert_eq!(
        f.node_level(&t, agent, at(1030), &Thresholds::default()),
        Level::Warning
    );
}

#[test]
fn an_agent_whose_calls_fail_says_so_from_the_first_failure() {
    // Degraded already means its calls to the server fail (the window counts it as lost);
    // the agent's row says so too, and keeps the first failure's time once it turns lost.
    let mut f = demo(true);
    set_link(&mut f, D_W1, (2, 1020), ConnectivityState::Degraded, 1020);
    let t = f.tree();
    let agent = t.by_id["agent:w1"];
    assert_eq!(
        f.node_alert(&t, agent, at(1030)),
        Some(NodeAlert::ServerLost { since: 1020 })
    );
    set_link(&mut f, D_W1, (3, 1080), ConnectivityState::Lost, 1080);
    let t = f.tree();
    assert_eq!(
        f.node_alert(&t, agent, at(1090)),
        Some(NodeAlert::ServerLost { since: 1020 }),
        "lost since the first failed call, not since the state turned lost"
    );
    let w = f.windows(&t, at(1090));
    assert_eq!(window(&w, "dmz").agents.lost_since, Some(1020));
    // Back, then failing again: a new loss.
    set_link(&mut f, D_W1, (4, 1100), ConnectivityState::Connected, 1100);
    let t = f.tree();
    assert_eq!(f.node_alert(&t, agent, at(1101)), None);
    set_link(&mut f, D_W1, (5, 1110), ConnectivityState::Lost, 1110);
    let t = f.tree();
    assert_eq!(
        f.node_alert(&t, agent, at(1111)),
        Some(NodeAlert::ServerLost { since: 1110 })
    );
}

#[test]
fn an_expired_svid_reason_says_expired_not_a_negative_time_left() {
    let mut f = demo(true);
    lose(&mut f, D_DMZ, 1010);
    let t = f.tree();
    let h = f.health(&t, at(1302), &Thresholds::default());
    let a = h
        .reasons
        .iter()
        .find(|r| r.contains("spiffe://td/prod/dmz/svid:w1#a"))
        .expect("a reason for a");
    assert!(a.contains("expired at 1970-01-01 00:21:40Z"), "{a}");
    assert!(!a.contains("-2s"), "{a}");
}

/// A reason names an agent as every view does: by its fleet name, not its label.
#[test]
fn reasons_name_agents_by_their_fleet_name() {
    let th = Thresholds {
        key_policy: false,
        ..Thresholds::default()
    };
    let mut f = demo(true);
    set_link(&mut f, D_W1, (2, 1010), ConnectivityState::Lost, 1010);
    let h = f.health(&f.tree(), at(1020), &th);
    assert!(
        h.reasons
            .iter()
            .any(|r| r.starts_with("dmz-w1 ") && r.contains("server lost since")),
        "{:?}",
        h.reasons
    );
}
