use std::collections::BTreeMap;

use trustdeck_proto::admin::{AuthorityInfo, AuthorityKind, AuthorityStatus};
use trustdeck_topology::ttl::Thresholds;

use super::*;
use crate::check::ServerReads;
use crate::inputs::resolve_inputs;
use crate::load::parse;
use crate::testfleet::{at, fleet};

const RB: &str = r#"
name = "t"
title = "T"
summary = "s"
target = "server"
[[inputs]]
name = "server"
kind = "upstream_server"
help = "h"
default_from = "only"
[[steps]]
id = "check"
title = "C"
why = "w"
timeout = "10s"
pre = [{ check = "all_links_connected" }]
action = { call = "none" }
plan = "nothing"
[[steps]]
id = "prep"
title = "P"
why = "w"
risk = "high"
confirm = "type_target"
timeout = "10s"
action = { call = "prepare", server = "${server}", kind = "x509", save = "new" }
plan = "prepare on ${server}, then ${new}"
verify = [{ check = "bundle_everywhere", sequence = "${new_sequence}" }]
rollback = { call = "taint", server = "${server}", kind = "x509", id = "${new}" }
"#;

fn auths() -> ServerReads {
    let authorities = BTreeMap::from([(
        "up".to_string(),
        vec![AuthorityInfo {
            kind: AuthorityKind::X509 as i32,
            id: "r1".into(),
            status: AuthorityStatus::Active as i32,
            ..Default::default()
        }],
    )]);
    ServerReads {
        authorities,
        ..Default::default()
    }
}

fn start(seq: u64) -> (Execution, trustdeck_topology::Fleet) {
    let rb = Arc::new(parse("t.toml", "t.toml", RB).expect("loads"));
    let f = fleet(seq, "i1");
    let vars = resolve_inputs(&rb, &BTreeMap::new(), &f, None).expect("inputs");
    assert_eq!(vars["server"], "up");
    assert_eq!(vars["server_active_x509"], "r1");
    (Execution::start(rb, vars), f)
}

fn obs<'a>(
    f: &'a trustdeck_topology::Fleet,
    a: &'a ServerReads,
    p: &'a BTreeMap<String, Vec<trustdeck_proto::admin::KeyProbeResult>>,
    t: i64,
) -> Observation<'a> {
    Observation {
        now: at(t),
        fleet: f,
        reads: a,
        probes: p,
        thresholds: Thresholds::default(),
    }
}

#[test]
fn a_run_confirms_by_typing_the_target_acts_and_verifies() {
    let (mut e, f) = start(5);
    let (a, p) = (auths(), BTreeMap::new());
    // Step 1 checks only and passes; step 2 asks for the typed target.
    let Next::Confirm(c) = e.advance(&obs(&f, &a, &p, 1000)) else {
        panic!("confirm expected")
    };
    assert_eq!(c.expected.as_deref(), Some("up"));
    assert!(c.plan.contains("prepare on up, then <new>"), "{}", c.plan);
    assert!(e.confirm("yes").is_err(), "a wrong answer does nothing");
    assert_eq!(e.phase, Phase::Confirming);
    e.confirm("up").expect("typed");
    let Next::Act(Call::Prepare { server, .. }) = e.advance(&obs(&f, &a, &p, 1000)) else {
        panic!("act expected")
    };
    assert_eq!(server, "up");
    e.acted(
        at(1001),
        Ok(BTreeMap::from([
            ("new".into(), "r2".into()),
            ("new_sequence".into(), "6".into()),
        ])),
    );
    // Followers still at 5: verifying, then at 6: verified.
    assert_eq!(e.advance(&obs(&f, &a, &p, 1002)), Next::Observe);
    assert_eq!(e.last[0].progress, Some((0, 2)));
    let f6 = fleet(6, "i1");
    assert_eq!(
        e.advance(&obs(&f6, &a, &p, 1003)),
        Next::Finished(Outcome::Succeeded)
    );
    let events = e.take_events();
    assert!(
        events
            .iter()
            .any(|x| matches!(x, StepEvent::Verified { seconds: 2, .. })),
        "{events:?}"
    );
    assert_eq!(e.saved_values()["new"], "r2");
}

#[test]
fn a_verification_that_never_holds_times_out_and_rolls_back() {
    let (mut e, f) = start(5);
    let (a, p) = (auths(), BTreeMap::new());
    e.advance(&obs(&f, &a, &p, 1000));
    e.confirm("up").expect("typed");
    e.advance(&obs(&f, &a, &p, 1000));
    e.acted(
        at(1000),
        Ok(BTreeMap::from([
            ("new".into(), "r2".into()),
            ("new_sequence".into(), "9".into()),
        ])),
    );
    assert_eq!(e.advance(&obs(&f, &a, &p, 1009)), Next::Observe);
    let Next::Rollback(Call::Taint { id, .. }) = e.advance(&obs(&f, &a, &p, 1010)) else {
        panic!("rollback expected")
    };
    assert_eq!(id, "r2");
    e.rolled_back(Ok(()));
    let Some(Outcome::Stopped {
        reason,
        rolled_back,
        detail,
        ..
    }) = e.outcome.clone()
    else {
        panic!("stopped")
    };
    assert_eq!((reason, rolled_back), (StopReason::TimedOut, true));
    assert!(detail.contains("not verified within 10 s"), "{detail}");
}

#[test]
fn a_precondition_that_does_not_hold_stops_before_any_action() {
    let rb = Arc::new(parse("t.toml", "t.toml", RB).expect("loads"));
    let mut f = fleet(5, "i1");
    let vars = resolve_inputs(&rb, &BTreeMap::new(), &f, None).expect("inputs");
    f.set_conn(
        1,
        trustdeck_topology::DaemonConn::Lost {
            since: at(990),
            error: "x".into(),
        },
        at(1000),
    );
    let mut e = Execution::start(rb, vars);
    let (a, p) = (auths(), BTreeMap::new());
    let Next::Finished(Outcome::Stopped { reason, step, .. }) = e.advance(&obs(&f, &a, &p, 1000))
    else {
        panic!("refused")
    };
    assert_eq!((reason, step), (StopReason::Precondition, 0));
}

#[test]
fn a_resumed_action_already_verified_is_not_repeated() {
    let rb = Arc::new(parse("t.toml", "t.toml", RB).expect("loads"));
    let f = fleet(6, "i1");
    let mut vars = resolve_inputs(&rb, &BTreeMap::new(), &f, None).expect("inputs");
    vars.insert("new".into(), "r2".into());
    vars.insert("new_sequence".into(), "6".into());
    let mut e = Execution::resume(rb, vars, vec!["new".into()], 1, Phase::Acting, at(1000));
    let (a, p) = (auths(), BTreeMap::new());
    assert_eq!(
        e.advance(&obs(&f, &a, &p, 1000)),
        Next::Finished(Outcome::Succeeded)
    );
    assert!(
        e.take_events()
            .iter()
            .any(|x| matches!(x, StepEvent::AlreadyDone { step: 1, .. }))
    );
}

#[test]
fn inputs_are_checked_against_the_fleet() {
    let rb = parse("t.toml", "t.toml", RB).expect("loads");
    let f = fleet(5, "i1");
    let given = BTreeMap::from([
        ("server".to_string(), "gcp".to_string()),
        ("nope".to_string(), "x".to_string()),
    ]);
    let errs = resolve_inputs(&rb, &given, &f, None).expect_err("refused");
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("gcp") && t.contains("downstream server")),
        "{text:?}"
    );
    assert!(text.iter().any(|t| t.contains("--set nope")), "{text:?}");
}

#[test]
fn chains_follow_issuers_across_daemons() {
    use crate::check::evaluate;
    use crate::model::Check;
    use crate::param::Param;
    let f = fleet(5, "i1");
    let (a, p) = (auths(), BTreeMap::new());
    let o = obs(&f, &a, &p, 1000);
    let v = BTreeMap::new();
    let on_root = Check::SvidsChainTo {
        id: Param::lit("r1"),
    };
    assert!(evaluate(&on_root, &v, &o).ok);
    let none_on_i1 = Check::NoHeldSvidsChainTo {
        id: Param::lit("i1"),
    };
    let r = evaluate(&none_on_i1, &v, &o);
    assert!(!r.ok && r.progress == Some((0, 2)), "{r:?}");
    let inter = Check::IntermediatesChainTo {
        id: Param::lit("r2"),
    };
    assert!(!evaluate(&inter, &v, &o).ok);
}

const TWO_PRE: &str = r#"
name = "t"
title = "T"
summary = "s"
target = "server"
[[inputs]]
name = "server"
kind = "upstream_server"
help = "h"
default_from = "only"
[[steps]]
id = "tok"
title = "P"
why = "w"
risk = "high"
confirm = "type_target"
timeout = "10s"
pre = [{ check = "all_links_connected" }]
action = { call = "create_join_token", server = "${server}", save = "token" }
plan = "token"
"#;

#[test]
fn preconditions_are_checked_again_after_the_confirmation() {
    let rb = Arc::new(parse("t.toml", "t.toml", TWO_PRE).expect("loads"));
    let mut f = fleet(5, "i1");
    let vars = resolve_inputs(&rb, &BTreeMap::new(), &f, None).expect("inputs");
    let mut e = Execution::start(rb, vars);
    let (a, p) = (auths(), BTreeMap::new());
    assert!(matches!(
        e.advance(&obs(&f, &a, &p, 1000)),
        Next::Confirm(_)
    ));
    e.confirm("up").expect("typed");
    // A downstream went away while the operator typed.
    f.set_conn(
        1,
        trustdeck_topology::DaemonConn::Lost {
            since: at(1001),
            error: "x".into(),
        },
        at(1002),
    );
    let Next::Finished(Outcome::Stopped { reason, detail, .. }) = e.advance(&obs(&f, &a, &p, 1002))
    else {
        panic!("refused")
    };
    assert_eq!(reason, StopReason::Precondition);
    assert!(detail.starts_with("no longer true"), "{detail}");
}

#[test]
fn a_join_token_is_never_journaled() {
    let rb = Arc::new(parse("t.toml", "t.toml", TWO_PRE).expect("loads"));
    let f = fleet(5, "i1");
    let vars = resolve_inputs(&rb, &BTreeMap::new(), &f, None).expect("inputs");
    let mut e = Execution::start(rb, vars);
    let (a, p) = (auths(), BTreeMap::new());
    e.advance(&obs(&f, &a, &p, 1000));
    e.confirm("up").expect("typed");
    assert!(matches!(
        e.advance(&obs(&f, &a, &p, 1000)),
        Next::Act(Call::CreateJoinToken { .. })
    ));
    e.acted(
        at(1000),
        Ok(BTreeMap::from([
            ("token".into(), "s3cret".into()),
            ("token_agent".into(), "spiffe://td/a2".into()),
        ])),
    );
    assert_eq!(e.vars["token"], "s3cret");
    let journal = e.saved_values();
    assert!(!journal.contains_key("token") && journal["token_agent"] == "spiffe://td/a2");
    assert!(!e.journal_inputs().contains_key("token"));
    assert_eq!(e.journal_inputs()["server_active_x509"], "r1");
    assert_eq!(e.lock_key(), "spiffe://td/up");
}

#[test]
fn a_count_of_nothing_never_holds() {
    use crate::check::evaluate;
    use crate::model::Check;
    use crate::param::Param;
    let f = trustdeck_topology::Fleet::new([(
        "up".to_string(),
        "unix:///up".to_string(),
        trustdeck_proto::admin::DaemonRole::Upstream,
        "root".to_string(),
    )]);
    let (a, p) = (auths(), BTreeMap::new());
    let o = obs(&f, &a, &p, 1000);
    let v = BTreeMap::new();
    for c in [
        Check::AllLinksConnected,
        Check::BundleEverywhere {
            sequence: Param::lit("1"),
        },
        Check::SvidsChainTo {
            id: Param::lit("r1"),
        },
        Check::NoHeldSvidsChainTo {
            id: Param::lit("r1"),
        },
    ] {
        let r = evaluate(&c, &v, &o);
        assert!(!r.ok, "{r:?}");
    }
}

#[test]
fn every_phase_survives_the_journal() {
    for p in [
        Phase::Checking,
        Phase::Confirming,
        Phase::Acting,
        Phase::Verifying,
        Phase::Done,
        Phase::RollingBack,
        Phase::Failed,
    ] {
        assert_eq!(Phase::from_journal(p.journal()), p);
    }
    assert_eq!(
        Phase::from_journal(trustdeck_proto::admin::RunbookPhase::Unspecified),
        Phase::Checking
    );
}

const OPTIONAL: &str = r#"
name = "t"
title = "T"
summary = "s"
target = "server"
[[inputs]]
name = "server"
kind = "upstream_server"
help = "h"
default_from = "only"
[[steps]]
id = "find-jwt"
title = "F"
why = "w"
timeout = "10s"
action = { call = "find", server = "${server}", kind = "jwt", status = "tainted", save = "lost_jwt", optional = true }
plan = "reads"
[[steps]]
id = "revoke-jwt"
title = "R"
why = "w"
risk = "destructive"
confirm = "type_target"
timeout = "10s"
when = "${lost_jwt}"
action = { call = "revoke", server = "${server}", kind = "jwt", id = "${lost_jwt}" }
plan = "revokes ${lost_jwt}"
"#;

fn optional_run(a: &ServerReads) -> (Execution, Next) {
    let rb = Arc::new(parse("t.toml", "t.toml", OPTIONAL).expect("loads"));
    let f = fleet(5, "i1");
    let vars = resolve_inputs(&rb, &BTreeMap::new(), &f, None).expect("inputs");
    let mut e = Execution::start(rb, vars);
    let p = BTreeMap::new();
    let mut next = e.advance(&obs(&f, a, &p, 0));
    for t in 1..5 {
        if !matches!(next, Next::Observe) {
            break;
        }
        next = e.advance(&obs(&f, a, &p, t));
    }
    (e, next)
}

#[test]
fn an_optional_find_that_finds_nothing_skips_the_steps_that_need_it() {
    let (mut e, next) = optional_run(&auths());
    assert_eq!(
        next,
        Next::Finished(Outcome::Succeeded),
        "{:?}",
        e.take_events()
    );
    let ev = e.take_events();
    assert!(
        ev.iter()
            .any(|x| matches!(x, StepEvent::Skipped { id, .. } if id == "revoke-jwt")),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|x| matches!(x, StepEvent::Confirmed { .. })));
    assert!(e.skips(1) && !e.skips(0));

    // With a tainted JWT key the revoke step runs (and asks for the typed confirmation).
    let mut a = auths();
    a.authorities
        .get_mut("up")
        .expect("up")
        .push(AuthorityInfo {
            kind: AuthorityKind::Jwt as i32,
            id: "k1".into(),
            status: AuthorityStatus::Tainted as i32,
            ..Default::default()
        });
    let (_, next) = optional_run(&a);
    let Next::Confirm(c) = next else {
        panic!("{next:?}")
    };
    assert_eq!(c.id, "revoke-jwt");
    assert!(c.plan.contains("revokes k1"), "{}", c.plan);
}

#[test]
fn agent_serves_counts_each_moved_entry() {
    use crate::check::evaluate;
    use crate::model::Check;
    use crate::param::Param;
    let f = fleet(5, "i1");
    let (a, p) = (ServerReads::default(), BTreeMap::new());
    let o = obs(&f, &a, &p, 0);
    let serves = |ids: &str| {
        evaluate(
            &Check::AgentServes {
                agent: Param::lit("gcp-a"),
                ids: Param::lit(ids),
            },
            &BTreeMap::new(),
            &o,
        )
    };
    let one = serves("spiffe://td/w1");
    assert!(one.ok, "{one:?}");
    let two = serves("spiffe://td/w1, spiffe://td/w2");
    assert!(!two.ok && two.detail.contains("spiffe://td/w2"), "{two:?}");
    assert_eq!(two.progress, Some((1, 2)));
    let none = serves("");
    assert!(none.ok && none.detail.contains("no entries"), "{none:?}");
    let other = evaluate(
        &Check::AgentServes {
            agent: Param::lit("no-such-agent"),
            ids: Param::lit("spiffe://td/w1"),
        },
        &BTreeMap::new(),
        &o,
    );
    assert!(!other.ok, "{other:?}");
}

#[test]
fn intermediates_chain_to_holds_in_a_fleet_without_downstreams() {
    use crate::check::evaluate;
    use crate::model::Check;
    use crate::param::Param;
    let (f, a, p) = (
        trustdeck_topology::Fleet::default(),
        ServerReads::default(),
        BTreeMap::new(),
    );
    let c = Check::IntermediatesChainTo {
        id: Param::lit("r2"),
    };
    let r = evaluate(&c, &Vars::new(), &obs(&f, &a, &p, 0));
    assert!(r.ok && r.detail.contains("no downstream"), "{r:?}");
    let r = evaluate(&c, &Vars::new(), &obs(&fleet(5, "i1"), &a, &p, 0));
    assert!(!r.ok, "a downstream on another root: {r:?}");
    // The same fleet without its downstream: the intermediate the upstream issued still says
    // there is one.
    let mut partial = fleet(5, "i1");
    partial
        .daemons
        .retain(|d| d.role_hint != trustdeck_proto::admin::DaemonRole::Downstream);
    let r = evaluate(&c, &Vars::new(), &obs(&partial, &a, &p, 0));
    assert!(!r.ok && r.detail.contains("does not list"), "{r:?}");
}
