//! Windows during a loss: last-known facts used and marked, losses stated as facts, ages from
//! the loss.

use super::*;

#[test]
fn a_stale_downstream_window_uses_its_last_known_intermediate() {
    let mut f = demo(true);
    lose(&mut f, D_DMZ, 1010);
    let t = f.tree();
    let w = f.windows(&t, at(1015));
    let dmz = window(&w, "dmz");
    assert_eq!(
        dmz.x509_until,
        Some(5000),
        "the intermediate's real not_after"
    );
    assert_eq!(
        dmz.reach,
        Reach::Lost {
            since: 1010,
            error: "keepalive timed out".into()
        }
    );
    assert_eq!(
        dmz.stale_secs,
        Some(5),
        "counted from the loss, not the last message"
    );
    let up = dmz.upstream.as_ref().unwrap();
    assert_eq!(up.state, ConnectivityState::Connected);
    assert_eq!(up.as_of, Some(1010), "its upstream link is last-known");
    assert_eq!(
        dmz.upstream_outage(at(1015)),
        UpstreamOutage::IfLostNow {
            x509_until: Some(5000)
        }
    );
    assert_eq!(dmz.workloads, 3);
}

#[test]
fn a_loss_that_happened_is_a_fact() {
    let mut f = demo(true);
    lose(&mut f, D_DMZ, 1010);
    // The workload agent loses its server too, later.
    set_link(&mut f, D_W1, (2, 1020), ConnectivityState::Lost, 1020);
    let t = f.tree();
    let w = f.windows(&t, at(1200));
    let dmz = window(&w, "dmz");
    assert_eq!(
        dmz.agents,
        AgentLinks {
            total: 1,
            lost: 1,
            lost_since: Some(1020)
        }
    );
    assert_eq!(
        dmz.server_outage(at(1200)),
        ServerOutage::Lost {
            reach: Reach::Lost {
                since: 1010,
                error: "keepalive timed out".into()
            },
            agents_lost_at: Some(1020),
            past_renewal: 3,
            failure: Some(Deadline::At(1300)),
        }
    );
    // Once the first SVID expired, it has failed since then (never "in -8s").
    let ServerOutage::Lost { failure, .. } = dmz.server_outage(at(1308)) else {
        panic!("still lost")
    };
    assert_eq!(failure, Some(Deadline::Passed(1300)));
    // The root segment is not lost: still a what-if.
    assert_eq!(
        window(&w, "root").server_outage(at(1200)),
        ServerOutage::IfLostNow {
            fail_at: Some(1500)
        }
    );
}

#[test]
fn an_upstream_lost_is_a_fact_too() {
    let mut f = demo(true);
    set_link(&mut f, D_DMZ, (2, 1100), ConnectivityState::Lost, 1090);
    let t = f.tree();
    let w = f.windows(&t, at(1100));
    assert_eq!(
        window(&w, "dmz").upstream_outage(at(1100)),
        UpstreamOutage::Lost {
            since: 1090,
            as_of: None,
            x509: Some(Deadline::At(5000))
        }
    );
    // JWT unavailable is recorded once per loss.
    assert!(f.derive_events(&t, at(1100)) >= 1);
    let jwt: Vec<&FleetEvent> = f
        .events
        .iter()
        .filter(|e| e.event.kind_wire() == EventKind::JwtUnavailable)
        .collect();
    assert_eq!(jwt.len(), 1);
    assert_eq!(jwt[0].key, "console:jwt-unavailable:dmz:1090");
    f.derive_events(&t, at(1101));
    assert_eq!(
        f.events
            .iter()
            .filter(|e| e.event.kind_wire() == EventKind::JwtUnavailable)
            .count(),
        1
    );
}

#[test]
fn ages_count_from_the_loss_not_the_last_message() {
    let mut f = demo(true);
    // Last message at 1000; the console notices the loss at 1050.
    lose(&mut f, D_DMZ, 1050);
    assert_eq!(f.daemons[D_DMZ].staleness(at(1060)), Some(10));
    assert_eq!(f.daemons[D_DMZ].staleness(at(1000)), Some(0));
    assert_eq!(f.daemons[D_UP].staleness(at(1060)), Some(0), "live");
    let r = f.status_report(at(1060), &Thresholds::default());
    assert_eq!(r.daemons[D_DMZ].lost_seconds, Some(10));
    assert_eq!(r.daemons[D_DMZ].state, "lost");
    let t = f.tree();
    let tier = r.tiers.iter().find(|x| x.id == "x509:i1").unwrap();
    // The holder's record, last-known as of the loss (not the live upstream's record).
    assert!(tier.stale);
    assert_eq!(tier.as_of.as_deref(), Some("1970-01-01T00:17:30Z"));
    assert_eq!(t.nodes[t.by_id["x509:i1"]].source, D_DMZ);
    assert_eq!(t.nodes[t.by_id[DMZ]].source, D_DMZ);
    let srv = r.tiers.iter().find(|x| x.id == DMZ).unwrap();
    assert_eq!(srv.as_of.as_deref(), Some("1970-01-01T00:17:30Z"));
}
