//! A runbook's inputs, checked against the live fleet: what the operator set, else the
//! default (a value, the console's selection, or the fleet's only daemon of the kind), and
//! what each input implies (`<input>_active_x509`, `<agent>_server`, ...).

use std::collections::BTreeMap;

use trustdeck_proto::admin::DaemonRole;
use trustdeck_topology::Fleet;

use crate::facts;
use crate::model::{AuthKind, DefaultFrom, InputKind, InputSpec, Runbook};

/// Variables: inputs, what they imply, what steps saved.
pub type Vars = BTreeMap<String, String>;

/// Largest input value.
pub const MAX_VALUE: usize = 256;

/// Why an input is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("--set {name}: {runbook} has no such input (its inputs: {known})")]
    Unknown {
        name: String,
        runbook: String,
        known: String,
    },
    #[error("input {name} = {value:?}: {why}")]
    Invalid {
        name: String,
        value: String,
        why: String,
    },
    #[error("input {name} is required ({help}): give it with --set {name}=VALUE")]
    Missing { name: String, help: String },
    /// A variable the steps read that the fleet does not tell yet (a daemon never reached).
    #[error("${{{var}}} is not known from the fleet yet: {why}")]
    Unresolved { var: String, why: String },
}

/// What the console has selected, for `default_from = "selected"`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The fleet name of the daemon the selected node came from.
    pub daemon: Option<String>,
    /// The selected node's id (`x509:<skid>`, `agent:<id>`, ...).
    pub node_id: Option<String>,
}

/// The execution's variables for `given` inputs; every problem is reported.
pub fn resolve_inputs(
    rb: &Runbook,
    given: &Vars,
    fleet: &Fleet,
    sel: Option<&Selection>,
) -> Result<Vars, Vec<InputError>> {
    let mut errors = Vec::new();
    for name in given.keys() {
        if !rb.inputs.iter().any(|i| &i.name == name) {
            errors.push(InputError::Unknown {
                name: name.clone(),
                runbook: rb.name.clone(),
                known: rb
                    .inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let mut vars = Vars::new();
    for spec in &rb.inputs {
        let value = given
            .get(&spec.name)
            .cloned()
            .or_else(|| default_of(spec, fleet, sel));
        let Some(value) = value else {
            errors.push(InputError::Missing {
                name: spec.name.clone(),
                help: spec.help.clone(),
            });
            continue;
        };
        match check(spec, &value, fleet) {
            Ok(implied) => {
                vars.extend(implied);
                vars.insert(spec.name.clone(), value);
            }
            Err(why) => errors.push(InputError::Invalid {
                name: spec.name.clone(),
                value,
                why,
            }),
        }
    }
    if errors.is_empty() {
        errors.extend(unresolved(rb, &vars));
    }
    if errors.is_empty() {
        Ok(vars)
    } else {
        Err(errors)
    }
}

/// The variables steps read that neither the inputs nor a step give.
fn unresolved(rb: &Runbook, vars: &Vars) -> Vec<InputError> {
    let saved: Vec<String> = rb.steps.iter().flat_map(|s| s.action.saves()).collect();
    let mut read: Vec<String> = rb
        .steps
        .iter()
        .flat_map(|s| {
            let mut v: Vec<String> = s
                .pre
                .iter()
                .chain(&s.verify)
                .flat_map(|c| c.vars())
                .collect();
            v.extend(s.action.vars());
            v.extend(s.rollback.iter().flat_map(|a| a.vars()));
            v
        })
        .filter(|v| !vars.contains_key(v) && !saved.contains(v))
        .collect();
    read.sort();
    read.dedup();
    read.into_iter()
        .map(|var| InputError::Unresolved {
            why: "is the daemon it comes from reachable and synced? (its active authority, its server)".into(),
            var,
        })
        .collect()
}

fn wants_role(kind: InputKind) -> Option<&'static [DaemonRole]> {
    match kind {
        InputKind::UpstreamServer => Some(&[DaemonRole::Upstream]),
        InputKind::DownstreamServer => Some(&[DaemonRole::Downstream]),
        InputKind::Server => Some(&[DaemonRole::Upstream, DaemonRole::Downstream]),
        InputKind::Agent => Some(&[DaemonRole::Agent]),
        _ => None,
    }
}

fn default_of(spec: &InputSpec, fleet: &Fleet, sel: Option<&Selection>) -> Option<String> {
    match spec.default_from {
        Some(DefaultFrom::Selected) => {
            let sel = sel?;
            if spec.kind == InputKind::AuthorityId {
                let id = sel.node_id.as_deref()?;
                return id
                    .strip_prefix("x509:")
                    .or_else(|| id.strip_prefix("jwt:"))
                    .map(str::to_string);
            }
            let d = facts::daemon(fleet, sel.daemon.as_deref()?)?;
            let roles = wants_role(spec.kind)?;
            facts::role(d)
                .is_some_and(|r| roles.contains(&r))
                .then(|| d.name.clone())
        }
        Some(DefaultFrom::Only) => {
            let roles = wants_role(spec.kind)?;
            let mut it = facts::of_role(fleet, roles);
            let one = it.next()?;
            it.next().is_none().then(|| one.name.clone())
        }
        None => None,
    }
    .or_else(|| spec.default.clone())
}

/// Checks `value` against the fleet; returns the variables it implies.
fn check(spec: &InputSpec, value: &str, fleet: &Fleet) -> Result<Vars, String> {
    if value.is_empty() || value.len() > MAX_VALUE || value.contains(['\n', '\r']) {
        return Err(format!("must be one line of 1 to {MAX_VALUE} bytes"));
    }
    let name = &spec.name;
    let mut out = Vars::new();
    if let Some(roles) = wants_role(spec.kind) {
        let d = facts::daemon(fleet, value).ok_or("no daemon of the fleet file has this name")?;
        match facts::role(d) {
            Some(r) if roles.contains(&r) => {}
            Some(r) => return Err(format!("is a {} daemon", role_word(r))),
            None => return Err("its role is not known yet (is it reachable?)".into()),
        }
        for k in [AuthKind::X509, AuthKind::Jwt] {
            if let Some(id) = facts::active(d, k) {
                out.insert(format!("{name}_active_{k}"), id);
            }
        }
        let server = facts::server_of(fleet, d).or_else(|| {
            // A downstream never reached in this run: its fleet's only upstream.
            (spec.kind == InputKind::DownstreamServer)
                .then(|| only_upstream(fleet))
                .flatten()
        });
        if let Some(s) = server {
            let key = if spec.kind == InputKind::Agent {
                "server"
            } else {
                "upstream"
            };
            out.insert(format!("{name}_{key}"), s);
        }
        if let Some(id) = d
            .identity
            .as_ref()
            .map(|i| i.spiffe_id.clone())
            .filter(|s| !s.is_empty())
        {
            if let Ok(parsed) = trustdeck_spiffe::SpiffeId::parse(&id) {
                out.insert(
                    format!("{name}_trust_domain"),
                    parsed.trust_domain().as_str().to_string(),
                );
            }
            out.insert(format!("{name}_spiffe_id"), id);
        }
        return Ok(out);
    }
    match spec.kind {
        InputKind::AuthorityKind => {
            value.parse::<AuthKind>()?;
        }
        InputKind::AuthorityId => {
            let (server, kind) = facts::holder_of(fleet, value)
                .ok_or("no server of the fleet holds an authority with this id")?;
            out.insert(format!("{name}_server"), server);
            out.insert(format!("{name}_kind"), kind.to_string());
        }
        _ => {}
    }
    Ok(out)
}

fn only_upstream(fleet: &Fleet) -> Option<String> {
    let mut ups = facts::of_role(fleet, &[DaemonRole::Upstream]);
    let one = ups.next()?;
    ups.next().is_none().then(|| one.name.clone())
}

fn role_word(r: DaemonRole) -> &'static str {
    match r {
        DaemonRole::Upstream => "upstream server",
        DaemonRole::Downstream => "downstream server",
        DaemonRole::Agent => "agent",
        DaemonRole::Unspecified => "unknown",
    }
}
