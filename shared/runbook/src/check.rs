//! The predicates of preconditions and verifications, evaluated over one [`Observation`]:
//! the topology model (every daemon's `Watch` stream) plus what the admin API answered
//! (`ShowAuthorities`, `ProbeKeys`). Each result says what was checked, whether it holds, what
//! was seen, and how far along it is when it counts things.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use trustdeck_proto::admin::{
    AuthorityInfo, DaemonRole, KeyProbe, KeyProbeResult, ListForeignBundlesResponse,
};
use trustdeck_topology::ttl::Thresholds;
use trustdeck_topology::{Fleet, FleetHealth};

use crate::facts;
use crate::inputs::Vars;
use crate::model::{AuthKind, Check};
use crate::param::ParamError;

/// What the admin API answered of each reachable server, by fleet name.
#[derive(Debug, Clone, Default)]
pub struct ServerReads {
    /// `ShowAuthorities`.
    pub authorities: BTreeMap<String, Vec<AuthorityInfo>>,
    /// `ListForeignBundles`: the foreign bundles it holds and its peers' receipts.
    pub foreign: BTreeMap<String, ListForeignBundlesResponse>,
}

/// What the executor saw, at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub now: DateTime<Utc>,
    pub fleet: &'a Fleet,
    /// What each reachable server's admin API answered.
    pub reads: &'a ServerReads,
    /// `ProbeKeys` of the servers the current step asks about, by fleet name.
    pub probes: &'a BTreeMap<String, Vec<KeyProbeResult>>,
    pub thresholds: Thresholds,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// What was checked, in words.
    pub check: String,
    pub ok: bool,
    /// What was seen.
    pub detail: String,
    /// How many of how many, when the check counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<(u64, u64)>,
}

/// Evaluates `c` with `vars`; a variable without a value fails the check, saying so.
pub fn evaluate(c: &Check, vars: &Vars, o: &Observation) -> CheckResult {
    match eval(c, vars, o) {
        Ok(r) => r,
        Err(e) => CheckResult {
            check: describe(c, vars),
            ok: false,
            detail: e.to_string(),
            progress: None,
        },
    }
}

/// `c` in words, for plans and results.
pub fn describe(c: &Check, v: &Vars) -> String {
    let r = |p: &crate::param::Text| p.render(v);
    match c {
        Check::DaemonLive { daemon } => format!("{} is reachable", r(&daemon.text)),
        Check::AllDaemonsLive => "every daemon of the fleet is reachable".into(),
        Check::AllLinksConnected => "every downstream and agent is connected to its server".into(),
        Check::LinkConnected { daemon } => {
            format!("{} is connected to its server", r(&daemon.text))
        }
        Check::AuthorityIs {
            server,
            kind,
            id,
            status,
        } => format!(
            "{} authority {} on {} is {}",
            r(&kind.text),
            r(&id.text),
            r(&server.text),
            r(&status.text)
        ),
        Check::InBundle {
            server,
            kind,
            id,
            present,
        } => format!(
            "{} authority {} {} {}'s bundle",
            r(&kind.text),
            r(&id.text),
            if *present { "is in" } else { "has left" },
            r(&server.text)
        ),
        Check::BundleEverywhere { sequence } => format!(
            "every downstream and agent holds bundle sequence {} or later",
            r(&sequence.text)
        ),
        Check::IntermediatesChainTo { id } => {
            format!(
                "every downstream's active intermediate chains to {}",
                r(&id.text)
            )
        }
        Check::SvidsChainTo { id } => format!("every held X.509-SVID chains to {}", r(&id.text)),
        Check::NoHeldSvidsChainTo { id } => {
            format!("no held X.509-SVID chains to {}", r(&id.text))
        }
        Check::SegmentServing { server } => format!(
            "every agent of {} is attested and holds valid workload SVIDs",
            r(&server.text)
        ),
        Check::NoLiveSvids { server, kind, id } => format!(
            "no live SVID chains to {} authority {} ({}'s census)",
            r(&kind.text),
            r(&id.text),
            r(&server.text)
        ),
        Check::KeysAnswer { server } => {
            format!("every key of {} answers a probe signature", r(&server.text))
        }
        Check::AgentAttested { agent, id, not_id } => match (id, not_id) {
            (Some(i), _) => format!("{} is attested as {}", r(&agent.text), r(&i.text)),
            (None, Some(n)) => format!(
                "{} is attested afresh (not as {})",
                r(&agent.text),
                r(&n.text)
            ),
            (None, None) => format!("{} is attested", r(&agent.text)),
        },
        Check::AgentNeedsBootstrap { agent } => format!(
            "{} cannot renew by itself (stranded, or no valid SVID)",
            r(&agent.text)
        ),
        Check::AgentEvicted { server, agent } => format!(
            "{} lists no attested agent {}",
            r(&server.text),
            r(&agent.text)
        ),
        Check::AgentServing { agent } => {
            format!("{} holds valid workload SVIDs", r(&agent.text))
        }
        Check::AgentServes { agent, .. } => {
            format!("{} holds an SVID for every entry moved", r(&agent.text))
        }
        Check::FleetHealthy => "the fleet is healthy (status ok)".into(),
        Check::PeersHold { server, sequence } => format!(
            "every isolated peer of {} acknowledged bundle sequence {} or later",
            r(&server.text),
            r(&sequence.text)
        ),
    }
}

pub(crate) fn result(check: String, ok: bool, detail: String) -> CheckResult {
    CheckResult {
        check,
        ok,
        detail,
        progress: None,
    }
}

/// A count: holds when every one of at least one counted does (nothing counted is not
/// "all": a fleet file without agents never verifies what agents must hold).
pub(crate) fn counted(check: String, good: u64, total: u64, detail: String) -> CheckResult {
    CheckResult {
        check,
        ok: total > 0 && good == total,
        detail: if total == 0 {
            "nothing to count: the fleet file lists none".into()
        } else {
            detail
        },
        progress: Some((good, total)),
    }
}

fn authority<'a>(
    o: &'a Observation,
    server: &str,
    kind: AuthKind,
    id: &str,
) -> Result<Option<&'a AuthorityInfo>, ParamError> {
    let list = o
        .reads
        .authorities
        .get(server)
        .ok_or_else(|| ParamError::Invalid {
            value: server.to_string(),
            why: "its authorities could not be read (unreachable?)".into(),
        })?;
    Ok(list
        .iter()
        .find(|a| a.kind_wire() == kind.proto() && a.id == id))
}

fn eval(c: &Check, v: &Vars, o: &Observation) -> Result<CheckResult, ParamError> {
    let what = describe(c, v);
    let r = match links(c, v, o, &what)? {
        Some(r) => Some(r),
        None => match authorities(c, v, o, &what)? {
            Some(r) => Some(r),
            None => match crate::chains::eval(c, v, o, &what)? {
                Some(r) => Some(r),
                None => match agents(c, v, o, &what)? {
                    Some(r) => Some(r),
                    None => crate::peers::eval(c, v, o, &what)?,
                },
            },
        },
    };
    Ok(r.unwrap_or_else(|| result(what, false, "this build cannot evaluate it".into())))
}

/// Reachability, links, bundles, overall health.
fn links(
    c: &Check,
    v: &Vars,
    o: &Observation,
    what: &str,
) -> Result<Option<CheckResult>, ParamError> {
    let (fleet, what) = (o.fleet, what.to_string());
    Ok(Some(match c {
        Check::DaemonLive { daemon } => {
            let name = daemon.resolve(v)?;
            let live = facts::daemon(fleet, &name).is_some_and(|d| d.is_live());
            result(
                what,
                live,
                if live {
                    "live".into()
                } else {
                    "not reachable".into()
                },
            )
        }
        Check::AllDaemonsLive => {
            let down: Vec<_> = fleet
                .daemons
                .iter()
                .filter(|d| !d.is_live())
                .map(|d| d.name.as_str())
                .collect();
            let n = fleet.daemons.len() as u64;
            counted(
                what,
                n - down.len() as u64,
                n,
                not_listed("unreachable", &down),
            )
        }
        Check::AllLinksConnected => {
            let linked: Vec<_> =
                facts::of_role(fleet, &[DaemonRole::Downstream, DaemonRole::Agent]).collect();
            let bad: Vec<_> = linked
                .iter()
                .filter(|d| !d.is_live() || !facts::link_connected(d))
                .map(|d| d.name.as_str())
                .collect();
            let n = linked.len() as u64;
            counted(
                what,
                n - bad.len() as u64,
                n,
                not_listed("not connected", &bad),
            )
        }
        Check::LinkConnected { daemon } => {
            let name = daemon.resolve(v)?;
            let ok = facts::daemon(fleet, &name)
                .is_some_and(|d| d.is_live() && facts::link_connected(d));
            result(
                what,
                ok,
                if ok {
                    "connected".into()
                } else {
                    "not connected".into()
                },
            )
        }
        Check::BundleEverywhere { sequence } => {
            let want = sequence.resolve(v)?;
            let followers: Vec<_> =
                facts::of_role(fleet, &[DaemonRole::Downstream, DaemonRole::Agent]).collect();
            let behind: Vec<_> = followers
                .iter()
                .filter(|d| {
                    !d.is_live()
                        || d.upstream
                            .as_ref()
                            .is_none_or(|u| u.last_bundle_sequence < want)
                })
                .map(|d| d.name.as_str())
                .collect();
            let n = followers.len() as u64;
            counted(
                what,
                n - behind.len() as u64,
                n,
                not_listed("behind", &behind),
            )
        }
        Check::FleetHealthy => {
            let h = fleet.health(&fleet.tree(), o.now, &o.thresholds);
            let ok = h.state() == FleetHealth::Ok;
            result(
                what,
                ok,
                if ok {
                    "ok".into()
                } else {
                    format!("{}: {}", h.state().as_str(), h.reasons.join("; "))
                },
            )
        }
        _ => return Ok(None),
    }))
}

/// What `ShowAuthorities` and `ProbeKeys` say.
fn authorities(
    c: &Check,
    v: &Vars,
    o: &Observation,
    what: &str,
) -> Result<Option<CheckResult>, ParamError> {
    let what = what.to_string();
    Ok(Some(match c {
        Check::AuthorityIs {
            server,
            kind,
            id,
            status,
        } => {
            let (s, k, i, want) = (
                server.resolve(v)?,
                kind.resolve(v)?,
                id.resolve(v)?,
                status.resolve(v)?,
            );
            match authority(o, &s, k, &i)? {
                Some(a) => {
                    let st = a.status_wire();
                    result(what, st == want.proto(), format!("it is {st}"))
                }
                None => result(what, false, format!("{s} has no {k} authority {i}")),
            }
        }
        Check::InBundle {
            server,
            kind,
            id,
            present,
        } => {
            let (s, k, i) = (server.resolve(v)?, kind.resolve(v)?, id.resolve(v)?);
            let inb = authority(o, &s, k, &i)?.is_some_and(|a| a.in_bundle);
            result(
                what,
                inb == *present,
                if inb {
                    "in the bundle".into()
                } else {
                    "not in the bundle".into()
                },
            )
        }
        Check::NoLiveSvids { server, kind, id } => {
            let (s, k, i) = (server.resolve(v)?, kind.resolve(v)?, id.resolve(v)?);
            match authority(o, &s, k, &i)? {
                Some(a) => result(
                    what,
                    a.live_svids == 0,
                    format!("{} live SVIDs chain to it", a.live_svids),
                ),
                None => result(what, true, "the authority is gone".into()),
            }
        }
        Check::KeysAnswer { server } => {
            let s = server.resolve(v)?;
            match o.probes.get(&s) {
                None => result(what, false, "no probe answer yet".into()),
                Some(keys) => {
                    let bad: Vec<_> = keys
                        .iter()
                        .filter(|k| k.probe_wire() != KeyProbe::Ok)
                        .map(|k| {
                            format!(
                                "{} {}: {} {}",
                                k.kind_wire(),
                                k.id,
                                k.probe_wire(),
                                k.detail
                            )
                        })
                        .collect();
                    let n = keys.len() as u64;
                    let mut r = counted(
                        what,
                        n - bad.len() as u64,
                        n,
                        if bad.is_empty() {
                            format!("{n} keys answered")
                        } else {
                            bad.join("; ")
                        },
                    );
                    r.ok = bad.is_empty() && n > 0;
                    r
                }
            }
        }
        _ => return Ok(None),
    }))
}

/// Agents: attested, serving, evicted, stranded.
fn agents(
    c: &Check,
    v: &Vars,
    o: &Observation,
    what: &str,
) -> Result<Option<CheckResult>, ParamError> {
    let (fleet, what) = (o.fleet, what.to_string());
    Ok(Some(match c {
        Check::SegmentServing { server } => {
            let s = server.resolve(v)?;
            let agents: Vec<_> = facts::of_role(fleet, &[DaemonRole::Agent])
                .filter(|d| facts::server_of(fleet, d).as_deref() == Some(s.as_str()))
                .collect();
            let bad: Vec<_> = agents
                .iter()
                .filter(|d| {
                    !d.is_live()
                        || !facts::link_connected(d)
                        || !facts::held_svids(d, o.now).iter().any(|n| {
                            n.kind_wire() == trustdeck_proto::admin::NodeKind::WorkloadSvid
                        })
                })
                .map(|d| d.name.as_str())
                .collect();
            let n = agents.len() as u64;
            let mut r = counted(
                what,
                n - bad.len() as u64,
                n,
                if n == 0 {
                    "no agent of this server in the fleet".into()
                } else {
                    not_listed("not serving", &bad)
                },
            );
            r.ok = bad.is_empty() && n > 0;
            r
        }
        Check::AgentNeedsBootstrap { agent } => {
            let name = agent.resolve(v)?;
            let d = facts::daemon(fleet, &name);
            let stranded = d.and_then(|d| d.upstream.as_ref()).is_some_and(|u| {
                u.state_wire() == trustdeck_proto::admin::ConnectivityState::Stranded
            });
            let ok = d.is_some_and(|d| d.is_live()) && (stranded || !own_svid_valid(d, o));
            let detail = if stranded {
                "stranded"
            } else if ok {
                "no valid agent SVID"
            } else {
                "it renews by itself: no re-bootstrap needed"
            };
            result(what, ok, detail.into())
        }
        Check::AgentEvicted { server, agent } => {
            let (s, a) = (server.resolve(v)?, agent.resolve(v)?);
            let d = facts::daemon(fleet, &s).filter(|d| d.is_live());
            let present = d.is_some_and(|d| {
                d.nodes
                    .get(&format!("agent:{a}"))
                    .is_some_and(|n| n.state_wire() == trustdeck_proto::admin::NodeState::Attested)
            });
            let detail = match (d, present) {
                (None, _) => format!("{s} is not reachable"),
                (_, true) => "still attested".into(),
                _ => "gone".into(),
            };
            result(what, d.is_some() && !present, detail)
        }
        Check::AgentAttested { agent, id, not_id } => {
            let name = agent.resolve(v)?;
            let want = id.as_ref().map(|p| p.resolve(v)).transpose()?;
            let not = not_id.as_ref().map(|p| p.resolve(v)).transpose()?;
            let d = facts::daemon(fleet, &name);
            let current = d
                .and_then(|d| d.identity.as_ref())
                .map_or("", |i| i.spiffe_id.as_str());
            if want.as_deref().is_some_and(|w| w != current) || not.as_deref() == Some(current) {
                return Ok(Some(result(
                    what,
                    false,
                    format!("attested as {current:?}"),
                )));
            }
            let own_valid = d.is_some_and(|d| {
                d.nodes.values().any(|n| {
                    n.kind_wire() == trustdeck_proto::admin::NodeKind::Agent
                        && n.not_after > o.now.timestamp()
                })
            });
            let ok = d.is_some_and(|d| d.is_live() && facts::link_connected(d)) && own_valid;
            result(
                what,
                ok,
                if ok {
                    "attested".into()
                } else if own_valid {
                    "not connected".into()
                } else {
                    "no valid agent SVID".into()
                },
            )
        }
        Check::AgentServing { agent } => {
            let name = agent.resolve(v)?;
            let n = facts::daemon(fleet, &name)
                .filter(|d| d.is_live())
                .map_or(0, |d| {
                    facts::held_svids(d, o.now)
                        .iter()
                        .filter(|n| n.kind_wire() == trustdeck_proto::admin::NodeKind::WorkloadSvid)
                        .count()
                });
            result(what, n > 0, format!("{n} valid workload SVIDs"))
        }
        Check::AgentServes { agent, ids } => {
            let (name, ids) = (agent.resolve(v)?, ids.resolve(v)?);
            let want: Vec<&str> = ids
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let held: Vec<&str> = facts::daemon(fleet, &name)
                .filter(|d| d.is_live())
                .map(|d| {
                    facts::held_svids(d, o.now)
                        .into_iter()
                        .filter(|n| n.kind_wire() == trustdeck_proto::admin::NodeKind::WorkloadSvid)
                        .map(|n| n.spiffe_id.as_str())
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<&str> = want.iter().copied().filter(|w| !held.contains(w)).collect();
            let detail = if want.is_empty() {
                "no entries were moved".to_string()
            } else {
                format!(
                    "{} of {} served{}",
                    want.len() - missing.len(),
                    want.len(),
                    if missing.is_empty() {
                        String::new()
                    } else {
                        format!("; not yet: {}", missing.join(", "))
                    }
                )
            };
            let mut r = result(what, missing.is_empty(), detail);
            if !want.is_empty() {
                let n = |x: usize| u64::try_from(x).unwrap_or(u64::MAX);
                r.progress = Some((n(want.len() - missing.len()), n(want.len())));
            }
            r
        }
        _ => return Ok(None),
    }))
}

/// Whether the agent daemon `d` holds a valid agent SVID.
fn own_svid_valid(d: Option<&trustdeck_topology::DaemonState>, o: &Observation) -> bool {
    d.is_some_and(|d| {
        d.nodes.values().any(|n| {
            n.kind_wire() == trustdeck_proto::admin::NodeKind::Agent
                && n.not_after > o.now.timestamp()
        })
    })
}

pub(crate) fn not_listed(word: &str, names: &[&str]) -> String {
    if names.is_empty() {
        "all".into()
    } else {
        format!("{word}: {}", names.join(", "))
    }
}
