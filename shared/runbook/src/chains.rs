//! What chains to what, from the issuers the daemons publish: intermediates, held SVIDs and
//! the census against an X.509 authority.

use trustdeck_proto::admin::DaemonRole;

use crate::check::{CheckResult, Observation, counted, not_listed, result};
use crate::facts;
use crate::inputs::Vars;
use crate::model::{AuthKind, Check};
use crate::param::ParamError;

/// The chain checks; `None` for another check.
pub(crate) fn eval(
    c: &Check,
    v: &Vars,
    o: &Observation,
    what: &str,
) -> Result<Option<CheckResult>, ParamError> {
    let (fleet, what) = (o.fleet, what.to_string());
    Ok(Some(match c {
        Check::IntermediatesChainTo { id } => {
            let want = id.resolve(v)?;
            let downs: Vec<_> = facts::of_role(fleet, &[DaemonRole::Downstream]).collect();
            if downs.is_empty() {
                // A trust domain of one server holds nothing to move, unless its servers
                // issued intermediates to downstreams the fleet file leaves out.
                let now = o.now.timestamp();
                let issued = fleet
                    .daemons
                    .iter()
                    .flat_map(|d| d.nodes.values())
                    .filter(|n| {
                        n.kind_wire() == trustdeck_proto::admin::NodeKind::X509Authority
                            && n.state_wire().known()
                                == Some(trustdeck_proto::admin::NodeState::Issued)
                            && n.not_after > now
                            && !facts::chain_of(fleet, n).contains(&want)
                    })
                    .count();
                return Ok(Some(if issued == 0 {
                    result(
                        what,
                        true,
                        "no downstream server and no intermediate issued: nothing to move".into(),
                    )
                } else {
                    result(
                        what,
                        false,
                        format!(
                            "{issued} valid intermediates not chaining to it were issued to \
                             downstream servers the fleet file does not list: add them to it"
                        ),
                    )
                }));
            }
            let bad: Vec<_> = downs
                .iter()
                .filter(|d| {
                    let active = facts::authorities(d, AuthKind::X509)
                        .into_iter()
                        .find(|(_, s, _)| *s == trustdeck_proto::admin::NodeState::Active);
                    !d.is_live()
                        || active.is_none_or(|(_, _, n)| !facts::chain_of(fleet, n).contains(&want))
                })
                .map(|d| d.name.as_str())
                .collect();
            let n = downs.len() as u64;
            counted(what, n - bad.len() as u64, n, not_listed("not yet", &bad))
        }
        Check::SvidsChainTo { id } => {
            let want = id.resolve(v)?;
            let mut total = 0;
            let mut good = 0;
            let mut behind = Vec::new();
            for d in facts::of_role(fleet, &[DaemonRole::Agent]) {
                let held = facts::held_svids(d, o.now);
                let ok = held
                    .iter()
                    .filter(|n| facts::chain_of(fleet, n).contains(&want))
                    .count();
                total += held.len() as u64;
                good += ok as u64;
                if ok < held.len() || !d.is_live() {
                    behind.push(d.name.as_str());
                }
            }
            let mut r = counted(
                what,
                good,
                total,
                not_listed("not yet on every SVID", &behind),
            );
            r.ok = behind.is_empty() && total > 0;
            r
        }
        Check::NoHeldSvidsChainTo { id } => {
            let old = id.resolve(v)?;
            let mut still = 0u64;
            let mut total = 0u64;
            let mut holders = Vec::new();
            for d in facts::of_role(fleet, &[DaemonRole::Agent]) {
                let held = facts::held_svids(d, o.now);
                let n = held
                    .iter()
                    .filter(|n| facts::chain_of(fleet, n).contains(&old))
                    .count() as u64;
                total += held.len() as u64;
                still += n;
                if n > 0 || !d.is_live() {
                    holders.push(d.name.as_str());
                }
            }
            let mut r = counted(
                what,
                total - still,
                total,
                if holders.is_empty() {
                    "none".into()
                } else {
                    format!(
                        "{still} still do or are not known, on {}",
                        holders.join(", ")
                    )
                },
            );
            r.ok = holders.is_empty() && total > 0;
            r
        }
        _ => return Ok(None),
    }))
}
