//! What makes a registration entry acceptable: pure checks of a `CreateEntryRequest`, every
//! refusal a typed reason.

use chrono::Duration;
use trustdeck_datastore::NewEntry;
use trustdeck_pki::bounds::{OutOfRange, SVID_TTL};
use trustdeck_proto::admin::CreateEntryRequest;
use trustdeck_spiffe::{IdError, Selector, SelectorError, SpiffeId, TrustDomain};

/// The path under which the daemons' own identities live (`/trustdeck/server`,
/// `/trustdeck/agent/...`): no entry may name an ID there.
pub const RESERVED_PATH: &str = "/trustdeck";

/// What is wrong with a registration entry request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// `spiffe_id` is not a SPIFFE ID of a workload (one with a path).
    #[error("spiffe_id: {0}")]
    SpiffeId(IdError),
    /// `parent_id` is not a SPIFFE ID.
    #[error("parent_id: {0}")]
    ParentId(IdError),
    /// An ID names another trust domain.
    #[error("{field} {id} is not in this server's trust domain {td}")]
    ForeignTrustDomain {
        /// `spiffe_id` or `parent_id`.
        field: &'static str,
        id: SpiffeId,
        td: TrustDomain,
    },
    /// The entry would be its own parent: no agent could ever serve it.
    #[error("parent_id {0} is the entry's own spiffe_id: an entry cannot be its own parent")]
    ParentIsSelf(SpiffeId),
    /// The ID belongs to a daemon (a server or an agent): an entry for it would let a
    /// workload impersonate that daemon.
    #[error(
        "spiffe_id {0} is reserved for trustdeck's own servers and agents (the path {RESERVED_PATH}/ \
         and this server's ID): choose another path"
    )]
    ReservedId(SpiffeId),
    /// No selector, so no workload could ever match.
    #[error("at least one selector is required (e.g. unix:uid:1000)")]
    NoSelectors,
    #[error("selector: {0}")]
    Selector(SelectorError),
    /// A TTL outside the SVID range.
    #[error(transparent)]
    Ttl(OutOfRange),
    #[error("dns name {0:?} is not a valid DNS name")]
    DnsName(String),
    /// The namespaces of a downstream entry are wrong, or given for another entry.
    #[error(transparent)]
    Namespace(#[from] crate::namespace::NamespaceError),
    /// This server is a downstream whose namespaces do not hold the entry's SPIFFE ID.
    #[error(
        "spiffe_id {id} is outside this server's namespaces {scope}: no SVID could ever be issued for it here"
    )]
    OutsideNamespace { id: String, scope: String },
    /// A `federates_with` value is not a trust domain name.
    #[error("federates_with {value:?}: {error}")]
    FederatesWith { value: String, error: IdError },
    /// `federates_with` names this server's own trust domain, whose bundle every workload
    /// receives anyway.
    #[error(
        "federates_with {0}: that is this server's own trust domain; name foreign trust domains only"
    )]
    FederatesWithOwn(TrustDomain),
    #[error("at most {MAX_FEDERATES_WITH} federates_with trust domains per entry, got {0}")]
    TooManyFederations(usize),
    /// This server holds no bundle for a trust domain in `federates_with`.
    #[error(
        "federates_with {0}: this server holds no bundle for that trust domain; create a \
         federation relationship (`trustdeck-server federation create`) or import its bundle \
         (`trustdeck-server bundle import`) first"
    )]
    NoForeignBundle(TrustDomain),
}

/// Refuses `federates_with` naming a trust domain whose bundle is not in `held`.
pub fn require_held(
    federates_with: &[String],
    held: &crate::federation::deliver::ForeignBundles,
) -> Result<(), EntryError> {
    match federates_with.iter().find(|td| !held.contains_key(*td)) {
        None => Ok(()),
        Some(td) => Err(EntryError::NoForeignBundle(
            TrustDomain::parse(td).map_err(|error| EntryError::FederatesWith {
                value: td.clone(),
                error,
            })?,
        )),
    }
}

/// Most foreign trust domains one entry may federate with.
pub const MAX_FEDERATES_WITH: usize = 32;

/// The foreign trust domains of `given`, parsed, sorted and de-duplicated; never `own`.
pub fn federates_with(given: &[String], own: &TrustDomain) -> Result<Vec<TrustDomain>, EntryError> {
    if given.len() > MAX_FEDERATES_WITH {
        return Err(EntryError::TooManyFederations(given.len()));
    }
    let mut out = given
        .iter()
        .map(|v| {
            let td = TrustDomain::parse(v).map_err(|error| EntryError::FederatesWith {
                value: v.clone(),
                error,
            })?;
            if &td == own {
                return Err(EntryError::FederatesWithOwn(td));
            }
            Ok(td)
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// The namespace rules for `new` (already valid otherwise) on a server that may issue under
/// `scope`: `given` only on downstream entries, which get the default when none are given;
/// every entry's SPIFFE ID within `scope`, except node aliases (parented to the server: no
/// SVID is issued for them).
pub fn within_scope(
    mut new: NewEntry,
    given: &[String],
    scope: &crate::namespace::Scope,
    server_id: &SpiffeId,
) -> Result<NewEntry, EntryError> {
    use crate::namespace::{NamespaceError, for_downstream};
    if !new.downstream && !given.is_empty() {
        return Err(NamespaceError::NotDownstream.into());
    }
    let id = SpiffeId::parse(&new.spiffe_id).map_err(EntryError::SpiffeId)?;
    let alias = new.parent_id == server_id.as_str();
    if !alias && !scope.allows(&id) {
        return Err(EntryError::OutsideNamespace {
            id: new.spiffe_id,
            scope: scope.describe(),
        });
    }
    if new.downstream {
        new.namespaces = for_downstream(&id, given, scope)?;
    }
    Ok(new)
}

/// Checks an entry request for a server of `td` whose own ID is `server_id`; every problem
/// is named.
pub fn validate_entry(
    req: &CreateEntryRequest,
    td: &TrustDomain,
    server_id: &SpiffeId,
) -> Result<NewEntry, EntryError> {
    let id = SpiffeId::parse(&req.spiffe_id).map_err(EntryError::SpiffeId)?;
    id.require_path().map_err(EntryError::SpiffeId)?;
    in_trust_domain("spiffe_id", &id, td)?;
    if is_reserved(&id) || &id == server_id {
        return Err(EntryError::ReservedId(id));
    }
    let parent = SpiffeId::parse(&req.parent_id).map_err(EntryError::ParentId)?;
    in_trust_domain("parent_id", &parent, td)?;
    if parent == id {
        return Err(EntryError::ParentIsSelf(parent));
    }
    if req.selectors.is_empty() {
        return Err(EntryError::NoSelectors);
    }
    let selectors = req
        .selectors
        .iter()
        .map(|s| {
            let sel = Selector::parse(s).map_err(EntryError::Selector)?;
            sel.check_known().map_err(EntryError::Selector)?;
            Ok(sel.to_string())
        })
        .collect::<Result<Vec<_>, EntryError>>()?;
    let x509_ttl_secs = ttl_secs("x509_ttl", req.x509_ttl_secs)?;
    let jwt_ttl_secs = ttl_secs("jwt_ttl", req.jwt_ttl_secs)?;
    if let Some(d) = req.dns_names.iter().find(|d| !is_dns_name(d)) {
        return Err(EntryError::DnsName(d.clone()));
    }
    let federates_with = federates_with(&req.federates_with, td)?
        .iter()
        .map(|t| t.as_str().to_string())
        .collect();
    Ok(NewEntry {
        spiffe_id: id.to_string(),
        parent_id: parent.to_string(),
        selectors,
        x509_ttl_secs,
        jwt_ttl_secs,
        downstream: req.downstream,
        dns_names: req.dns_names.clone(),
        namespaces: Vec::new(),
        federates_with,
    })
}

/// Whether `id` is under [`RESERVED_PATH`] (a whole segment: `/trustdeckx` is not).
pub fn is_reserved(id: &SpiffeId) -> bool {
    id.path()
        .strip_prefix(RESERVED_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A TTL as stored (0: the server's default), after checking a set one against the range.
fn ttl_secs(field: &'static str, secs: Option<i64>) -> Result<i64, EntryError> {
    let Some(secs) = secs else { return Ok(0) };
    // Seconds beyond what a duration holds are out of range like any other too-large value.
    let d = Duration::try_seconds(secs).unwrap_or(Duration::MAX);
    SVID_TTL.check(field, d).map_err(EntryError::Ttl)?;
    Ok(secs)
}

fn in_trust_domain(field: &'static str, id: &SpiffeId, td: &TrustDomain) -> Result<(), EntryError> {
    if id.trust_domain() == td {
        return Ok(());
    }
    Err(EntryError::ForeignTrustDomain {
        field,
        id: id.clone(),
        td: td.clone(),
    })
}

/// Whether `d` is a DNS name an X.509 SVID may carry (labels of letters, digits, `-`, `*`).
fn is_dns_name(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn server_id() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/ops/server-a").unwrap()
    }

    fn request() -> CreateEntryRequest {
        CreateEntryRequest {
            spiffe_id: "spiffe://example.org/web".into(),
            parent_id: "spiffe://example.org/trustdeck/agent/join_token/abc".into(),
            selectors: vec!["unix:uid:1000".into()],
            ..Default::default()
        }
    }

    fn refused(req: CreateEntryRequest) -> EntryError {
        validate_entry(&req, &td(), &server_id()).unwrap_err()
    }

    #[test]
    fn federates_with_names_foreign_trust_domains_sorted_once() {
        let mut req = request();
        req.federates_with = ["spiffe://b.test", "a.test", "b.test"]
            .map(String::from)
            .to_vec();
        let e = validate_entry(&req, &td(), &server_id()).unwrap();
        assert_eq!(e.federates_with, ["a.test", "b.test"]);
        for (bad, says) in [
            ("example.org", "own trust domain"),
            (
                "spiffe://x.test/path",
                "federates_with \"spiffe://x.test/path\"",
            ),
            ("Bad Domain", "federates_with \"Bad Domain\""),
        ] {
            let mut req = request();
            req.federates_with = vec![bad.into()];
            let err = refused(req).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let mut req = request();
        req.federates_with = (0..=MAX_FEDERATES_WITH)
            .map(|i| format!("t{i}.test"))
            .collect();
        assert!(matches!(refused(req), EntryError::TooManyFederations(33)));
    }

    #[test]
    fn a_good_entry_passes_and_unset_ttls_are_the_default() {
        let e = validate_entry(&request(), &td(), &server_id()).unwrap();
        assert_eq!((e.x509_ttl_secs, e.jwt_ttl_secs), (0, 0));
        let mut req = request();
        req.spiffe_id = "spiffe://example.org/trustdeckx/web".into();
        req.x509_ttl_secs = Some(1);
        req.jwt_ttl_secs = Some(3650 * 86_400);
        let e = validate_entry(&req, &td(), &server_id()).unwrap();
        assert_eq!(e.x509_ttl_secs, 1);
    }

    /// Issue 12, defect 9: each of these was accepted.
    #[test]
    fn a_selector_that_never_matches_is_refused() {
        let mut req = request();
        req.selectors.push("unix:uid:notanumber".into());
        let e = refused(req);
        assert!(
            matches!(&e, EntryError::Selector(SelectorError::UnixValue { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("unix:uid:notanumber"), "{e}");
    }

    #[test]
    fn a_set_ttl_out_of_range_is_refused_zero_included() {
        for (x509, jwt, field) in [
            (Some(0), None, "x509_ttl"),
            (Some(-5), None, "x509_ttl"),
            (None, Some(0), "jwt_ttl"),
            (None, Some(i64::MAX), "jwt_ttl"),
            (Some(3650 * 86_400 + 1), None, "x509_ttl"),
        ] {
            let mut req = request();
            req.x509_ttl_secs = x509;
            req.jwt_ttl_secs = jwt;
            let e = refused(req);
            assert!(
                matches!(&e, EntryError::Ttl(o) if o.key == field),
                "{x509:?} {jwt:?}: {e:?}"
            );
            assert!(e.to_string().contains("allowed 1s to 3650d"), "{e}");
        }
    }

    fn with_ns(
        spiffe_id: &str,
        downstream: bool,
        given: &[&str],
        scope: &crate::namespace::Scope,
    ) -> Result<NewEntry, EntryError> {
        let mut req = request();
        req.spiffe_id = spiffe_id.into();
        req.downstream = downstream;
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        let new = validate_entry(&req, &td(), &server_id())?;
        within_scope(new, &given, scope, &server_id())
    }

    #[test]
    fn namespaces_belong_to_downstream_entries_inside_this_servers() {
        use crate::namespace::{NamespaceError as N, Scope};
        let all = Scope::Unrestricted;
        // A default from the seed's platform path; given ones are kept.
        let e = with_ns("spiffe://example.org/gcp/ds", true, &[], &all).unwrap();
        assert_eq!(e.namespaces, ["/dev/gcp/", "/prod/gcp/", "/staging/gcp/"]);
        let e = with_ns("spiffe://example.org/gcp/ds", true, &["/prod/gcp/"], &all).unwrap();
        assert_eq!(e.namespaces, ["/prod/gcp/"]);
        // Not on other entries, and well-formed.
        let e = with_ns("spiffe://example.org/web", false, &["/prod/gcp/"], &all).unwrap_err();
        assert!(
            matches!(e, EntryError::Namespace(N::NotDownstream)),
            "{e:?}"
        );
        let e = with_ns("spiffe://example.org/gcp/ds", true, &["/prod"], &all).unwrap_err();
        assert!(matches!(e, EntryError::Namespace(N::Slashes(_))), "{e:?}");
        assert!(
            with_ns("spiffe://example.org/web", false, &[], &all)
                .unwrap()
                .namespaces
                .is_empty()
        );
        // On a downstream: entries inside its namespaces only; a nested downstream's inside too.
        let mid = Scope::Within(vec!["/prod/gcp/".into()]);
        assert!(
            with_ns(
                "spiffe://example.org/prod/gcp/payments/api",
                false,
                &[],
                &mid
            )
            .is_ok()
        );
        let e = with_ns(
            "spiffe://example.org/prod/aws/payments/api",
            false,
            &[],
            &mid,
        )
        .unwrap_err();
        assert!(matches!(e, EntryError::OutsideNamespace { .. }), "{e:?}");
        assert!(e.to_string().contains("/prod/gcp/"), "{e}");
        let e = with_ns(
            "spiffe://example.org/prod/gcp/leaf",
            true,
            &["/prod/"],
            &mid,
        )
        .unwrap_err();
        assert!(
            matches!(e, EntryError::Namespace(N::OutsideOwn { .. })),
            "{e:?}"
        );
        let leaf = with_ns("spiffe://example.org/prod/gcp/leaf", true, &[], &mid).unwrap();
        assert_eq!(leaf.namespaces, ["/prod/gcp/"]);
        // Not before it learnt them.
        assert!(
            with_ns(
                "spiffe://example.org/prod/gcp/x",
                false,
                &[],
                &Scope::Unknown
            )
            .is_err()
        );
        // A node alias (parented to the server) gets no SVID: not bound.
        let mut req = request();
        req.spiffe_id = "spiffe://example.org/node/gcp/n1".into();
        req.parent_id = server_id().to_string();
        let new = validate_entry(&req, &td(), &server_id()).unwrap();
        assert!(within_scope(new, &[], &mid, &server_id()).is_ok());
    }

    #[test]
    fn an_entry_cannot_be_its_own_parent() {
        let mut req = request();
        req.parent_id = req.spiffe_id.clone();
        assert!(matches!(refused(req), EntryError::ParentIsSelf(_)));
    }

    #[test]
    fn daemon_ids_are_reserved() {
        for id in [
            "spiffe://example.org/trustdeck/server",
            "spiffe://example.org/trustdeck/agent/join_token/abc",
            "spiffe://example.org/trustdeck",
            "spiffe://example.org/ops/server-a",
        ] {
            let mut req = request();
            req.spiffe_id = id.into();
            req.downstream = true;
            let e = refused(req);
            assert!(
                matches!(&e, EntryError::ReservedId(r) if r.to_string() == id),
                "{e:?}"
            );
            assert!(e.to_string().contains("reserved"), "{e}");
        }
    }
}
