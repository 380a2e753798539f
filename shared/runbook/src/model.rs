//! The runbook file format, typed. Unknown keys are errors; enums are written in snake case.

use std::fmt;
use std::str::FromStr;

use chrono::Duration;
use serde::{Deserialize, Deserializer, Serialize};
use trustdeck_proto::admin::{AuthorityKind, AuthorityStatus};

use crate::param::{Param, Text};

/// One runbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// What `runbook run NAME` takes; the file is `NAME.toml`.
    pub name: String,
    pub title: String,
    /// When to use it, in a sentence or two.
    pub summary: String,
    /// The nodes the console offers it on.
    #[serde(default)]
    pub applies_to: Vec<Applies>,
    /// The input naming what it acts on: two executions never hold one target at once, and a
    /// destructive step's confirmation is typing its value.
    pub target: String,
    /// What an execution holds while it runs or stands stopped: its target (the daemon's
    /// SPIFFE ID when known), or the whole trust domain (runbooks that change authorities: one
    /// at a time, since a root rotation moves every intermediate).
    #[serde(default)]
    pub lock: Lock,
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
    pub steps: Vec<Step>,
    /// The file it came from (`shipped:NAME.toml` or a path).
    #[serde(skip)]
    pub source: String,
    /// SHA-256 of the file's text, hex: an execution resumes only with the same file.
    #[serde(skip)]
    pub digest: String,
}

/// What an execution holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lock {
    #[default]
    Target,
    TrustDomain,
}

/// A node a runbook applies to, as the console's selection names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applies {
    /// The upstream server, or its root CA.
    Upstream,
    /// A downstream server, or its intermediate CA.
    Downstream,
    /// A JWT signing key.
    JwtAuthority,
    /// Any X.509 authority or JWT key (tainting).
    Authority,
    /// An agent.
    Agent,
    /// An agent whose join token its server refuses for good.
    StrandedAgent,
    /// A server whose key in its HSM is unavailable.
    KeyUnavailable,
}

/// An input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub kind: InputKind,
    pub help: String,
    /// A value used when none is given.
    #[serde(default)]
    pub default: Option<String>,
    /// Where a value comes from when none is given.
    #[serde(default)]
    pub default_from: Option<DefaultFrom>,
}

/// What an input names; each kind is checked against the live fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A fleet daemon of role upstream. Implies `<name>_active_x509`, `<name>_active_jwt`.
    /// Every daemon input also implies `<name>_spiffe_id` and `<name>_trust_domain` once
    /// its identity is known.
    UpstreamServer,
    /// A downstream server. Implies `<name>_active_x509` and `<name>_upstream` (its
    /// upstream's fleet name).
    DownstreamServer,
    /// Any server. Implies `<name>_active_x509`, and `<name>_active_jwt` when it has one.
    Server,
    /// An agent. Implies `<name>_spiffe_id` and `<name>_server` (its server's fleet name).
    Agent,
    /// `x509` or `jwt`.
    AuthorityKind,
    /// An authority's id as `authority show` prints it (subject key id or kid), known to
    /// the fleet.
    AuthorityId,
    /// Free text (at most 256 bytes, one line).
    Text,
}

/// Where an input's default comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultFrom {
    /// The node selected in the console (its daemon, or the authority itself).
    Selected,
    /// The fleet's only daemon of the input's kind.
    Only,
}

/// One step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    pub title: String,
    /// Why this step exists.
    pub why: String,
    #[serde(default)]
    pub risk: Risk,
    /// The confirmation before the action; `type_target` is required for destructive steps.
    #[serde(default)]
    pub confirm: ConfirmKind,
    /// How long the verification may take.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// What must hold before the action; checked once, a false one refuses the step.
    #[serde(default)]
    pub pre: Vec<Check>,
    pub action: Action,
    /// Exactly what the action will change (the dry run).
    pub plan: Text,
    /// What must hold after the action, polled until true or the timeout.
    #[serde(default)]
    pub verify: Vec<Check>,
    /// What undoes the action when its verification times out.
    #[serde(default)]
    pub rollback: Option<Action>,
    /// What the operator should do when this step stops.
    #[serde(default)]
    pub on_failure: Option<Text>,
    /// The step runs only when this renders to something (e.g. `${lost_jwt}`, saved empty by
    /// an optional `find` that found nothing); otherwise it is skipped, nothing checked.
    #[serde(default)]
    pub when: Option<Text>,
}

/// How much can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Reads only, or waits.
    #[default]
    Low,
    /// Changes something that is easy to undo.
    Medium,
    /// Changes what the fleet trusts or signs with.
    High,
    /// Cannot be undone (a revocation, an eviction).
    Destructive,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Destructive => "destructive",
        }
    }
}

/// The confirmation a step asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmKind {
    /// None: the step goes ahead (checks and waits).
    #[default]
    None,
    /// "yes".
    Yes,
    /// Typing the target's value.
    TypeTarget,
}

/// `x509` or `jwt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    X509,
    Jwt,
}

impl AuthKind {
    pub fn proto(self) -> AuthorityKind {
        match self {
            AuthKind::X509 => AuthorityKind::X509,
            AuthKind::Jwt => AuthorityKind::Jwt,
        }
    }

    /// The node-id prefix of its authorities (`x509:`, `jwt:`).
    pub fn node_prefix(self) -> &'static str {
        match self {
            AuthKind::X509 => "x509:",
            AuthKind::Jwt => "jwt:",
        }
    }
}

impl FromStr for AuthKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "x509" => Ok(AuthKind::X509),
            "jwt" => Ok(AuthKind::Jwt),
            _ => Err("not an authority kind (x509, jwt)".into()),
        }
    }
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthKind::X509 => "x509",
            AuthKind::Jwt => "jwt",
        })
    }
}

/// An authority's status, as a check names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStatus {
    Prepared,
    Active,
    Old,
    Tainted,
    Revoked,
}

impl AuthStatus {
    pub fn proto(self) -> AuthorityStatus {
        match self {
            AuthStatus::Prepared => AuthorityStatus::Prepared,
            AuthStatus::Active => AuthorityStatus::Active,
            AuthStatus::Old => AuthorityStatus::Old,
            AuthStatus::Tainted => AuthorityStatus::Tainted,
            AuthStatus::Revoked => AuthorityStatus::Revoked,
        }
    }
}

impl FromStr for AuthStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "prepared" => AuthStatus::Prepared,
            "active" => AuthStatus::Active,
            "old" => AuthStatus::Old,
            "tainted" => AuthStatus::Tainted,
            "revoked" => AuthStatus::Revoked,
            _ => {
                return Err(
                    "not an authority status (prepared, active, old, tainted, revoked)".into(),
                );
            }
        })
    }
}

/// What a step does: one admin call, a manual instruction, or nothing (a wait).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Nothing: the step checks and verifies only.
    None,
    /// Something only the operator can do (carry a file, restart a process on another host);
    /// confirming it says it is done, and the verification checks it.
    Manual { instruction: Text },
    /// `authority <kind> prepare` on `server`; saves the new authority's id as `<save>` and
    /// the bundle sequence after it as `<save>_sequence`.
    Prepare {
        server: Param<String>,
        kind: Param<AuthKind>,
        save: String,
    },
    Activate {
        server: Param<String>,
        kind: Param<AuthKind>,
        id: Param<String>,
    },
    /// Also saves the bundle sequence after it as `<save>_sequence` when `save` is given.
    Taint {
        server: Param<String>,
        kind: Param<AuthKind>,
        id: Param<String>,
        #[serde(default)]
        save: Option<String>,
    },
    Revoke {
        server: Param<String>,
        kind: Param<AuthKind>,
        id: Param<String>,
        #[serde(default)]
        force: bool,
    },
    /// A join token on `server`; saves it as `<save>` and the agent ID it gives as
    /// `<save>_agent`.
    CreateJoinToken { server: Param<String>, save: String },
    /// Reads (changes nothing): saves as `<save>` the id of `server`'s authority of `kind`
    /// with `status`; stops the execution when there is none, or, when `optional`, saves an
    /// empty value (a later step's `when` skips on it).
    Find {
        server: Param<String>,
        kind: Param<AuthKind>,
        status: Param<AuthStatus>,
        save: String,
        #[serde(default)]
        optional: bool,
    },
    /// Reads (changes nothing): saves as `<save>` the SPIFFE ID agent `agent` (a fleet name)
    /// says it has now, as its `Watch` stream tells it (after it attested again).
    ReadAgentId { agent: Param<String>, save: String },
    /// Re-parents every registration entry on `server` whose parent is `from` onto `to`
    /// (each entry created under `to`, then the old one deleted): the workloads of an agent
    /// that comes back under a new SPIFFE ID. With `save`, saves the SPIFFE IDs of the entries
    /// moved (comma-separated) as `<save>`.
    MoveEntries {
        server: Param<String>,
        from: Param<String>,
        to: Param<String>,
        #[serde(default)]
        save: Option<String>,
    },
    /// Evicts the attested agent `agent` (a SPIFFE ID) from `server`.
    EvictAgent {
        server: Param<String>,
        agent: Param<String>,
    },
    /// `bundle export --signed` of `server` into the directory `dir` (a new file, never one
    /// overwritten): saves the file's path as `<save>` and its bundle sequence as
    /// `<save>_sequence`.
    ExportBundle {
        server: Param<String>,
        dir: Param<String>,
        save: String,
    },
}

impl Action {
    /// The variables it reads.
    pub fn vars(&self) -> Vec<String> {
        let mut v = Vec::new();
        match self {
            Action::None => {}
            Action::Manual { instruction } => v.extend(instruction.vars()),
            Action::Prepare { server, kind, .. } => {
                v.extend(server.vars());
                v.extend(kind.vars());
            }
            Action::Activate { server, kind, id }
            | Action::Taint {
                server, kind, id, ..
            }
            | Action::Revoke {
                server, kind, id, ..
            } => {
                v.extend(server.vars());
                v.extend(kind.vars());
                v.extend(id.vars());
            }
            Action::CreateJoinToken { server, .. } => v.extend(server.vars()),
            Action::Find {
                server,
                kind,
                status,
                ..
            } => {
                v.extend(server.vars());
                v.extend(kind.vars());
                v.extend(status.vars());
            }
            Action::EvictAgent { server, agent } => {
                v.extend(server.vars());
                v.extend(agent.vars());
            }
            Action::ExportBundle { server, dir, .. } => {
                v.extend(server.vars());
                v.extend(dir.vars());
            }
            Action::ReadAgentId { agent, .. } => v.extend(agent.vars()),
            Action::MoveEntries {
                server, from, to, ..
            } => {
                v.extend(server.vars());
                v.extend(from.vars());
                v.extend(to.vars());
            }
        }
        v
    }

    /// The variables it saves.
    pub fn saves(&self) -> Vec<String> {
        match self {
            Action::Prepare { save, .. } | Action::ExportBundle { save, .. } => {
                vec![save.clone(), format!("{save}_sequence")]
            }
            Action::Taint { save: Some(s), .. } => vec![format!("{s}_sequence")],
            Action::CreateJoinToken { save, .. } => vec![save.clone(), format!("{save}_agent")],
            Action::Find { save, .. } | Action::ReadAgentId { save, .. } => vec![save.clone()],
            Action::MoveEntries { save: Some(s), .. } => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// The saved variables that are secrets (a join token): never journaled or published.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Action::CreateJoinToken { save, .. } => vec![save.clone()],
            _ => Vec::new(),
        }
    }

    /// Whether it is allowed as a rollback: it undoes a step without destroying anything.
    pub fn reversible(&self) -> bool {
        matches!(
            self,
            Action::None | Action::Taint { .. } | Action::MoveEntries { .. }
        )
    }

    /// Whether it changes anything in the fleet (an export only writes a file on the
    /// operator's side).
    pub fn changes(&self) -> bool {
        !matches!(
            self,
            Action::None
                | Action::Manual { .. }
                | Action::Find { .. }
                | Action::ReadAgentId { .. }
                | Action::ExportBundle { .. }
        )
    }
}

/// A predicate over the live fleet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The console has a live stream from this fleet daemon.
    DaemonLive { daemon: Param<String> },
    /// Every daemon of the fleet file is live.
    AllDaemonsLive,
    /// Every downstream server and agent reports its link to its server connected.
    AllLinksConnected,
    /// The daemon reports its link to its server connected.
    LinkConnected { daemon: Param<String> },
    /// The authority has this status on `server` (`authority show`).
    AuthorityIs {
        server: Param<String>,
        kind: Param<AuthKind>,
        id: Param<String>,
        status: Param<AuthStatus>,
    },
    /// The authority is (or, with `present = false`, is no longer) in `server`'s bundle.
    InBundle {
        server: Param<String>,
        kind: Param<AuthKind>,
        id: Param<String>,
        #[serde(default = "yes")]
        present: bool,
    },
    /// Every downstream server and agent holds a bundle of at least this sequence.
    BundleEverywhere { sequence: Param<u64> },
    /// Every downstream server's active intermediate chains to this X.509 authority.
    IntermediatesChainTo { id: Param<String> },
    /// Every held workload and agent X.509-SVID chains to this X.509 authority.
    SvidsChainTo { id: Param<String> },
    /// No held X.509-SVID (workload or agent, as the agents publish them) chains to this
    /// X.509 authority.
    NoHeldSvidsChainTo { id: Param<String> },
    /// Every agent of `server` is attested and holds valid workload SVIDs.
    SegmentServing { server: Param<String> },
    /// The census of `server` counts no live SVID chaining to the authority.
    NoLiveSvids {
        server: Param<String>,
        kind: Param<AuthKind>,
        id: Param<String>,
    },
    /// Every key `server` holds answers a probe signature (the HSM token answers, the PIN
    /// works, the key is there).
    KeysAnswer { server: Param<String> },
    /// The agent is attested: its link to its server is connected and its SVID is valid;
    /// with `id`, as that SPIFFE ID; with `not_id`, as any other than that one (attested
    /// afresh).
    AgentAttested {
        agent: Param<String>,
        #[serde(default)]
        id: Option<Param<String>>,
        #[serde(default)]
        not_id: Option<Param<String>>,
    },
    /// The agent cannot renew by itself: its link is stranded or it holds no valid SVID.
    AgentNeedsBootstrap { agent: Param<String> },
    /// `server` publishes no attested agent `agent` (a SPIFFE ID).
    AgentEvicted {
        server: Param<String>,
        agent: Param<String>,
    },
    /// The agent holds at least one valid workload SVID.
    AgentServing { agent: Param<String> },
    /// The agent holds a valid workload SVID for each SPIFFE ID of `ids` (comma-separated, as
    /// `move_entries` saves them; none moved: holds).
    AgentServes {
        agent: Param<String>,
        ids: Param<String>,
    },
    /// The fleet's health is `ok` (what `trustdeck status` exits 0 for).
    FleetHealthy,
    /// Every isolated peer of `server` (each foreign trust domain whose bundle came as a
    /// signed file) sent back a receipt for `sequence` of our bundle or later; with none,
    /// it does not hold.
    PeersHold {
        server: Param<String>,
        sequence: Param<u64>,
    },
}

fn yes() -> bool {
    true
}

impl Check {
    /// The variables it reads.
    pub fn vars(&self) -> Vec<String> {
        match self {
            Check::AllDaemonsLive | Check::AllLinksConnected | Check::FleetHealthy => Vec::new(),
            Check::DaemonLive { daemon: p }
            | Check::LinkConnected { daemon: p }
            | Check::IntermediatesChainTo { id: p }
            | Check::SvidsChainTo { id: p }
            | Check::NoHeldSvidsChainTo { id: p }
            | Check::SegmentServing { server: p }
            | Check::KeysAnswer { server: p }
            | Check::AgentNeedsBootstrap { agent: p }
            | Check::AgentServing { agent: p } => p.vars(),
            Check::AgentServes { agent, ids } => {
                let mut v = agent.vars();
                v.extend(ids.vars());
                v
            }
            Check::AgentAttested { agent, id, not_id } => [
                agent.vars(),
                id.as_ref().map(Param::vars).unwrap_or_default(),
                not_id.as_ref().map(Param::vars).unwrap_or_default(),
            ]
            .concat(),
            Check::AgentEvicted { server, agent } => [server.vars(), agent.vars()].concat(),
            Check::PeersHold { server, sequence } => [server.vars(), sequence.vars()].concat(),
            Check::BundleEverywhere { sequence } => sequence.vars(),
            Check::AuthorityIs {
                server,
                kind,
                id,
                status,
            } => [server.vars(), kind.vars(), id.vars(), status.vars()].concat(),
            Check::InBundle {
                server, kind, id, ..
            }
            | Check::NoLiveSvids { server, kind, id } => {
                [server.vars(), kind.vars(), id.vars()].concat()
            }
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let v = trustdeck_pki::rotation::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("timeout {s:?}: {e}")))?;
    if v <= Duration::zero() || v > Duration::hours(24) {
        return Err(serde::de::Error::custom(format!(
            "timeout {s:?}: must be more than 0 and at most 24h"
        )));
    }
    Ok(v)
}
