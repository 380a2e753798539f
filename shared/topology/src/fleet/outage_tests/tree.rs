//! The tree keeps its shape during an outage, a server never reached is matched to its
//! upstream's record, and every node counts under the segment whose server renews it.

use super::*;

#[test]
fn a_stale_downstream_keeps_the_tree_shape() {
    let mut f = demo(true);
    let before = f.tree();
    assert_eq!(before.by_id[DMZ_AS_ISSUED], before.by_id[DMZ]);
    lose(&mut f, D_DMZ, 1010);
    let after = f.tree();
    assert_eq!(after.nodes.len(), before.nodes.len(), "no node appears");
    assert_eq!(shape(&after), shape(&before), "no node moves");
    // The intermediate stays below the dmz server, whoever reports it.
    let i1 = after.by_id["x509:i1"];
    assert_eq!(after.nodes[i1].parent, Some(after.by_id[DMZ]));
}

#[test]
fn a_server_never_reached_is_matched_to_its_upstreams_record() {
    let mut f = demo(false);
    lose(&mut f, D_DMZ, 1005);
    lose(&mut f, D_DMZ, 1008);
    assert_eq!(
        f.daemons[D_DMZ].conn,
        DaemonConn::NeverReached {
            first_failure: at(1005),
            error: "keepalive timed out".into()
        },
        "never reached is its own state, not a loss"
    );
    assert_eq!(f.daemons[D_DMZ].staleness(at(1010)), None);
    let t = f.tree();
    // Its agents hang below the placeholder its upstream publishes.
    let p = t.by_id[DMZ_AS_ISSUED];
    assert_eq!(t.nodes[t.by_id["agent:w1"]].parent, Some(p));
    assert_eq!(&*t.nodes[p].segment, "dmz");
    let w = f.windows(&t, at(1010));
    let dmz = window(&w, "dmz");
    assert_eq!(dmz.x509_until, Some(5000), "the upstream's record");
    assert_eq!(dmz.workloads, 3);
    assert_eq!(dmz.workloads_fail_at, Some(1300));
    assert_eq!(dmz.stale_secs, None);
    assert!(dmz.upstream.is_none());
    assert_eq!(
        dmz.upstream_outage(at(1010)),
        UpstreamOutage::Unknown {
            x509_until: Some(5000)
        }
    );
    let r = f.status_report(at(1010), &Thresholds::default());
    let json = serde_json::to_value(&r).unwrap();
    assert!(!json.to_string().contains("-1"), "no sentinels: {json}");
    assert_eq!(json["daemons"][1]["state"], "never_reached");
    assert_eq!(
        json["daemons"][1]["first_failure_at"],
        "1970-01-01T00:16:45Z"
    );
    assert!(json["daemons"][1]["lost_since"].is_null());
    let seg = json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["segment"] == "dmz")
        .unwrap();
    assert_eq!(seg["server_state"], "never_reached");
    assert_eq!(seg["server_lost"], true);
    assert_eq!(
        seg["if_upstream_lost"]["x509_until"],
        "1970-01-01T01:23:20Z"
    );
    assert_eq!(seg["if_server_lost"]["workload_svids"], 3);
    let e = f.events.back().unwrap();
    assert_eq!(e.event.kind_wire(), EventKind::ConsoleUnreachable);
    assert!(
        e.event.message.contains("cannot reach dmz"),
        "{}",
        e.event.message
    );
}

#[test]
fn node_agent_svids_count_under_the_segment_of_the_server_that_issues_them() {
    let f = demo(true);
    let t = f.tree();
    // The node agent reports itself in segment dmz; its server is the upstream.
    let ds = t.by_id["svid:node#ds"];
    assert_eq!(t.nodes[ds].source, D_NODE);
    assert_eq!(&*t.nodes[ds].segment, "root");
    assert_eq!(&*t.nodes[t.by_id["agent:node"]].segment, "root");
    assert_eq!(&*t.nodes[t.by_id["svid:w1#a"]].segment, "dmz");
    assert_eq!(&*t.nodes[t.by_id["x509:i1"]].segment, "dmz");
    let w = f.windows(&t, at(1000));
    assert_eq!(window(&w, "root").workloads, 1, "the window panel");
    let r = f.status_report(at(1000), &Thresholds::default());
    let tier = r.tiers.iter().find(|x| x.id == "svid:node#ds").unwrap();
    assert_eq!(tier.segment, "root", "the JSON");
}

/// The dmz server's own record of its intermediate (its key in an HSM) and its issued copies
/// of the workload agent's SVIDs, as a delta at 1001.
fn dmz_with_issued_copies(f: &mut Fleet) {
    let mut i1 = n(
        "x509:i1",
        DMZ,
        NodeKind::X509Authority,
        NodeState::Active,
        0,
        5000,
    );
    i1.key_storage = Some(trustdeck_proto::admin::KeyStorage {
        backend: trustdeck_proto::admin::KeyBackend::Pkcs11.into(),
        detail: "softhsm2 token dmz".into(),
        ..Default::default()
    });
    let mut upserts = vec![i1];
    for id in ["svid:w1#a", "svid:w1#b", "svid:w1#c"] {
        let mut s = svid(id, 1000, 1300);
        s.state = NodeState::Issued.into();
        s.key_storage = None;
        upserts.push(s);
    }
    let m = delta(
        2,
        1001,
        Delta {
            upserts,
            ..Default::default()
        },
    );
    f.apply(D_DMZ, m, at(1001)).unwrap();
}

/// What a row says about a node: who it is from, its state and its key storage.
fn said(t: &Tree, id: &str) -> (usize, NodeState, Option<i32>) {
    let x = &t.nodes[t.by_id[id]];
    (
        x.source,
        x.node.state_wire().known().unwrap_or_default(),
        x.node.key_storage.as_ref().map(|k| k.backend),
    )
}

#[test]
fn a_stale_holders_record_is_kept_over_a_live_issuers() {
    let mut f = demo(true);
    dmz_with_issued_copies(&mut f);
    let before = f.tree();
    let pkcs11 = Some(trustdeck_proto::admin::KeyBackend::Pkcs11 as i32);
    assert_eq!(said(&before, "x509:i1"), (D_DMZ, NodeState::Active, pkcs11));
    assert_eq!(said(&before, "svid:w1#a").0, D_W1);
    // The downstream server stops: its intermediate's row still says what dmz said (last
    // known, from the stale dmz), not the upstream's record of what it issued.
    lose(&mut f, D_DMZ, 1010);
    let after = f.tree();
    assert_eq!(said(&after, "x509:i1"), (D_DMZ, NodeState::Active, pkcs11));
    assert_eq!(after.nodes.len(), before.nodes.len());
    assert_eq!(shape(&after), shape(&before));
    let w = f.windows(&after, at(1015));
    assert_eq!(
        window(&w, "dmz").x509_until,
        Some(5000),
        "its real not_after"
    );
    // The workload agent stops: its SVIDs stay held, not the live dmz's issued copies.
    lose(&mut f, D_W1, 1020);
    let after = f.tree();
    for id in ["svid:w1#a", "svid:w1#b", "svid:w1#c"] {
        let (d, state, _) = said(&after, id);
        assert_eq!((d, state), (D_W1, NodeState::Held), "{id}");
    }
    assert_eq!(shape(&after), shape(&before));
}

#[test]
fn a_live_issuers_record_fills_in_for_a_holder_never_heard() {
    let mut f = demo(false);
    lose(&mut f, D_DMZ, 1005);
    let t = f.tree();
    assert_eq!(said(&t, "x509:i1"), (D_UP, NodeState::Issued, None));
}

/// A ban is the server's decision: its record of a banned agent wins over the agent's own
/// (which still says attested until it learns).
#[test]
fn a_servers_ban_wins_over_the_agents_own_record() {
    let mut f = demo(true);
    let mut banned = workload_agent_nodes().remove(0);
    banned.state = NodeState::Banned.into();
    let d = delta(
        2,
        1002,
        Delta {
            upserts: vec![banned],
            ..Default::default()
        },
    );
    f.apply(D_DMZ, d, at(1002)).unwrap();
    let t = f.tree();
    assert_eq!(said(&t, "agent:w1").1, NodeState::Banned);
}
