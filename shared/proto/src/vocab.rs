//! The text of the admin API's enums, and how to read a value a newer daemon may send.
//!
//! prost keeps an enum field as its `i32`, and its generated getters (`node.state()`) turn a
//! value this build does not know into `UNSPECIFIED`. Read these fields through the
//! `*_wire()` accessors instead: a [`Wire`] keeps such a value apart and shows it as
//! `unknown`. The text of each value ([`Vocabulary::as_str`]) is what `trustdeck status`,
//! `trustdeck watch` and the console print; scripts and tests match on it, so it never
//! changes. `UNSPECIFIED` (not set) reads as the empty string.

use std::fmt;

use crate::admin::WatchMessage;
use crate::admin::watch_message::Body;
use crate::admin::{
    AuthorityInfo, AuthorityKind, AuthorityRefusal, AuthorityStatus, BundleFileKind,
    BundleFileRefusal, Connectivity, ConnectivityState, DaemonIdentity, DaemonRole, Event,
    EventKind, FederationInfo, FederationProfile, FederationRefusal, FetchFailureKind,
    ForeignBundleInfo, ForeignBundleSource, ForeignTrustDomain, FreshnessWarning,
    ImportBundleFileResponse, KeyBackend, KeyProbe, KeyProbeResult, KeyStorage, Node, NodeKind,
    NodeState, RefreshFederationResponse, RefreshOutcome, RunbookExecution, RunbookPhase,
    RunbookRefusal, RunbookState, Severity, StrandedReason,
};

/// Writes the `legacy_*` text beside every enum field of `msg`, for consoles built before
/// the enums (one release; see `admin.proto`).
pub fn fill_legacy(msg: &mut WatchMessage) {
    visit(msg, Direction::Fill);
}

/// Reads a message from a daemon built before the enums: an unset enum field takes the value
/// its `legacy_*` text names.
pub fn adopt_legacy(msg: &mut WatchMessage) {
    visit(msg, Direction::Adopt);
}

/// [`fill_legacy`] for a single node (a `GetNode` answer).
pub fn fill_legacy_node(node: &mut Node) {
    legacy_node(node, Direction::Fill);
}

/// [`adopt_legacy`] for a single node (a `GetNode` answer).
pub fn adopt_legacy_node(node: &mut Node) {
    legacy_node(node, Direction::Adopt);
}

#[derive(Clone, Copy)]
enum Direction {
    Fill,
    Adopt,
}

fn visit(msg: &mut WatchMessage, dir: Direction) {
    let (identity, nodes, upstream, events) = match msg.body.as_mut() {
        Some(Body::Snapshot(s)) => (
            &mut s.identity,
            &mut s.nodes,
            &mut s.upstream,
            &mut s.events,
        ),
        Some(Body::Delta(d)) => (
            &mut d.identity,
            &mut d.upserts,
            &mut d.upstream,
            &mut d.events,
        ),
        None => return,
    };
    if let Some(i) = identity {
        legacy::<DaemonRole>(&mut i.role, &mut i.legacy_role, dir);
    }
    for n in nodes {
        legacy_node(n, dir);
    }
    if let Some(c) = upstream {
        legacy::<ConnectivityState>(&mut c.state, &mut c.legacy_state, dir);
    }
    for e in events {
        legacy::<Severity>(&mut e.severity, &mut e.legacy_severity, dir);
        legacy::<EventKind>(&mut e.kind, &mut e.legacy_kind, dir);
    }
}

fn legacy_node(n: &mut Node, dir: Direction) {
    legacy::<NodeState>(&mut n.state, &mut n.legacy_state, dir);
    if let Some(k) = n.key_storage.as_mut() {
        legacy::<KeyBackend>(&mut k.backend, &mut k.legacy_backend, dir);
    }
}

/// One enum field and its legacy text. A value this build does not know is neither written
/// as text nor read from it.
fn legacy<E: Vocabulary>(raw: &mut i32, text: &mut String, dir: Direction) {
    match dir {
        Direction::Fill => {
            if let Ok(e) = E::try_from(*raw) {
                *text = e.as_str().to_string();
            }
        }
        Direction::Adopt => {
            if *raw == 0
                && let Some(e) = E::parse(text)
            {
                *raw = e.into();
            }
        }
    }
}

/// An enum of the admin API with a stable text form per value.
pub trait Vocabulary: Copy + Eq + TryFrom<i32> + Into<i32> + 'static {
    /// Every value, `UNSPECIFIED` first.
    const ALL: &'static [Self];
    /// What a value this build does not know reads as.
    const UNKNOWN: &'static str = "unknown";

    /// The value's text.
    fn as_str(self) -> &'static str;

    /// The value whose text is `s`.
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

/// An enum field as received: a value this build knows, or one from a newer peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire<E> {
    /// A value this build knows.
    Known(E),
    /// A value this build does not know (the raw number).
    Unknown(i32),
}

impl<E: Vocabulary> Wire<E> {
    /// Reads a raw field value.
    pub fn from_raw(raw: i32) -> Self {
        E::try_from(raw).map_or(Self::Unknown(raw), Self::Known)
    }

    /// The value, when this build knows it.
    pub fn known(self) -> Option<E> {
        match self {
            Self::Known(e) => Some(e),
            Self::Unknown(_) => None,
        }
    }

    /// The value's text; [`Vocabulary::UNKNOWN`] for an unknown value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Known(e) => e.as_str(),
            Self::Unknown(_) => E::UNKNOWN,
        }
    }

    /// Whether the field was left unset (`UNSPECIFIED`).
    pub fn is_unspecified(self) -> bool {
        matches!(self, Self::Known(e) if e.into() == 0)
    }
}

impl<E> From<E> for Wire<E> {
    fn from(e: E) -> Self {
        Self::Known(e)
    }
}

impl<E: PartialEq> PartialEq<E> for Wire<E> {
    fn eq(&self, other: &E) -> bool {
        matches!(self, Self::Known(e) if e == other)
    }
}

/// The text, padded and aligned as the format asks (`{:<10}`).
impl<E: Vocabulary> fmt::Display for Wire<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Implements [`Vocabulary`] and `Display` for an enum from its `value => "text"` table.
macro_rules! vocabulary {
    ($ty:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        vocabulary!($ty, "unknown", { $($v => $s),+ });
    };
    ($ty:ident, $unknown:literal, { $($v:ident => $s:literal),+ $(,)? }) => {
        impl Vocabulary for $ty {
            const ALL: &'static [Self] = &[$($ty::$v),+];
            const UNKNOWN: &'static str = $unknown;

            fn as_str(self) -> &'static str {
                match self {
                    $($ty::$v => $s),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

vocabulary!(DaemonRole {
    Unspecified => "",
    Upstream => "upstream",
    Downstream => "downstream",
    Agent => "agent",
});

// The status JSON has always named node kinds by their upper-case proto names.
vocabulary!(NodeKind, "UNKNOWN", {
    Unspecified => "NODE_KIND_UNSPECIFIED",
    Server => "SERVER",
    X509Authority => "X509_AUTHORITY",
    JwtAuthority => "JWT_AUTHORITY",
    Agent => "AGENT",
    WorkloadSvid => "WORKLOAD_SVID",
});

vocabulary!(KeyBackend {
    Unspecified => "",
    Memory => "memory",
    Disk => "disk",
    Pkcs11 => "pkcs11",
    Tpm => "tpm",
    Agent => "agent",
});

vocabulary!(NodeState {
    Unspecified => "",
    Serving => "serving",
    NoCa => "no CA",
    Active => "active",
    Prepared => "prepared",
    Old => "old",
    Issued => "issued",
    Attested => "attested",
    Banned => "banned",
    Held => "held",
    Tainted => "tainted",
});

vocabulary!(ConnectivityState {
    Unspecified => "",
    Connected => "connected",
    Degraded => "degraded",
    Lost => "lost",
    Connecting => "connecting",
    Stranded => "stranded",
});

vocabulary!(StrandedReason {
    Unspecified => "",
    TokenUsed => "token used",
    TokenExpired => "token expired",
    TokenUnknown => "token unknown",
});

vocabulary!(Severity {
    Unspecified => "",
    Info => "info",
    Warning => "warning",
    Error => "error",
});

vocabulary!(EventKind {
    Unspecified => "",
    X509Prepared => "x509-prepared",
    X509Activated => "x509-activated",
    JwtPrepared => "jwt-prepared",
    JwtActivated => "jwt-activated",
    Pruned => "pruned",
    KeyUnavailable => "key-unavailable",
    CaUnusable => "ca-unusable",
    RotationFailed => "rotation-failed",
    OperatorAction => "operator-action",
    AttestationOk => "attestation-ok",
    AttestationFailed => "attestation-failed",
    IntermediateSigned => "intermediate-signed",
    UpstreamConnected => "upstream-connected",
    UpstreamDegraded => "upstream-degraded",
    UpstreamLost => "upstream-lost",
    ConsoleUnreachable => "console-unreachable",
    SvidRenewalLate => "svid-renewal-late",
    JwtUnavailable => "jwt-unavailable",
    SvidExpired => "svid-expired",
    ConsoleReconnected => "console-reconnected",
    UpstreamStranded => "upstream-stranded",
    AuthorityTainted => "authority-tainted",
    AuthorityRevoked => "authority-revoked",
    TaintReissued => "taint-reissued",
    NamespaceViolation => "namespace-violation",
    Runbook => "runbook",
});

vocabulary!(KeyProbe {
    Unspecified => "",
    Ok => "ok",
    Missing => "missing",
    Unreachable => "unreachable",
    WrongKey => "wrong key",
});

vocabulary!(RunbookState {
    Unspecified => "",
    Running => "running",
    Succeeded => "succeeded",
    Stopped => "stopped",
    Aborted => "aborted",
});

vocabulary!(RunbookPhase {
    Unspecified => "",
    Checking => "checking",
    Confirming => "confirming",
    Acting => "acting",
    Verifying => "verifying",
    Done => "done",
    RollingBack => "rolling back",
    Failed => "failed",
});

// Why a runbook journal call was refused, in words.
vocabulary!(RunbookRefusal {
    Unspecified => "",
    TargetBusy => "another runbook execution holds this target",
    UnknownExecution => "no runbook execution has that id",
    Finished => "the execution has finished",
    HeldElsewhere => "another session is stepping through it",
    NotHolder => "this session does not hold the execution",
    Invalid => "a field is empty or too large",
});

vocabulary!(AuthorityKind {
    Unspecified => "",
    X509 => "x509",
    Jwt => "jwt",
});

vocabulary!(AuthorityStatus {
    Unspecified => "",
    Prepared => "prepared",
    Active => "active",
    Old => "old",
    Tainted => "tainted",
    Revoked => "revoked",
});

// The rule a refused authority operation would break, in words (the CLI prints it).
vocabulary!(AuthorityRefusal {
    Unspecified => "",
    UnknownId => "unknown authority id",
    IdRequired => "--id required",
    NoActive => "prepare needs an active authority",
    NotPrepared => "activate takes only the prepared authority",
    IsActive => "taint never takes the active authority",
    NotTainted => "revoke takes only a tainted authority",
    InUse => "live SVIDs still chain to it (--force to revoke anyway)",
    KindNotHere => "no authorities of this kind on this server",
    Already => "already in that state",
    CensusIncomplete => "started too recently to know what still chains to it",
    KeyUnreachable => "the prepared key does not answer",
});

// Why a signed bundle file or receipt was refused, in words (the CLI prints it).
vocabulary!(BundleFileRefusal {
    Unspecified => "",
    Truncated => "truncated file",
    Malformed => "not a signed bundle file or receipt",
    UnsupportedFormat => "unsupported format",
    Tampered => "tampered file",
    BrokenChain => "broken signing chain",
    WrongKind => "wrong kind of file",
    WrongTrustDomain => "wrong trust domain",
    UnknownSigner => "unknown signer",
    SignerNotValid => "signing authority not valid now",
    NotNewer => "not newer than the bundle held",
    TooOld => "too old",
    IssuedInFuture => "issued in the future",
    FingerprintRequired => "first import needs --fingerprint",
    FingerprintMismatch => "fingerprint mismatch",
    InvalidContent => "invalid signed content",
    NotAboutUs => "receipt for another trust domain's bundle",
    NoPeerBundle => "no bundle held for the peer",
    OwnTrustDomain => "our own trust domain",
    Federated => "kept by a federation relationship",
    InUse => "entries federate with it",
});

vocabulary!(BundleFileKind {
    Unspecified => "",
    Bundle => "bundle",
    Receipt => "receipt",
});

vocabulary!(ForeignBundleSource {
    Unspecified => "",
    Import => "import",
    Federation => "federation",
});

vocabulary!(FederationProfile {
    Unspecified => "",
    HttpsWeb => "https_web",
    HttpsSpiffe => "https_spiffe",
});

vocabulary!(RefreshOutcome {
    Unspecified => "",
    First => "first bundle",
    Updated => "updated",
    Unchanged => "unchanged",
    Refused => "refused",
    Failed => "failed",
});

// Why a federation relationship or a fetched bundle was refused, in words (the CLI prints it).
vocabulary!(FederationRefusal {
    Unspecified => "",
    NotABundle => "not a SPIFFE bundle",
    Empty => "empty bundle",
    SequenceBackwards => "sequence went backwards",
    SequenceReused => "sequence reused with other authorities",
    ForeignAuthority => "authority of another trust domain",
    EndpointOutsideTrustDomain => "endpoint outside the trust domain",
    UnexpectedEndpointId => "unexpected endpoint SPIFFE ID",
    EndpointRootUnknown => "endpoint signed by an unknown root",
    OwnTrustDomain => "own trust domain",
    UnknownTrustDomain => "no such relationship",
    AlreadyExists => "relationship exists",
    BootstrapRequired => "bootstrap required",
    Invalid => "invalid settings",
    NotAnAuthority => "not a usable CA certificate",
});

vocabulary!(FetchFailureKind {
    Unspecified => "",
    Refused => "refused",
    Connect => "connect",
    Timeout => "timeout",
    Tls => "tls",
    HttpStatus => "http status",
    TooLarge => "too large",
    Malformed => "malformed answer",
    Setup => "setup",
    NotKnown => "not known since restart",
});

vocabulary!(FreshnessWarning {
    Unspecified => "",
    MissingSigningRoot => "partner signs with a root we lack",
    RefreshesFailing => "refreshes keep failing",
    NoRelationship => "no relationship refreshes it",
});

/// Defines `<field>_wire()` readers of enum fields that keep a value this build does not know.
macro_rules! wire_fields {
    ($($msg:ident { $($get:ident: $field:ident as $ty:ident),+ })+) => {
        $(impl $msg {
            $(
                #[doc = concat!("`", stringify!($field), "` as sent, a value this build does not know included.")]
                pub fn $get(&self) -> Wire<$ty> {
                    Wire::from_raw(self.$field)
                }
            )+
        })+
    };
}

wire_fields! {
    DaemonIdentity { role_wire: role as DaemonRole }
    Node { kind_wire: kind as NodeKind, state_wire: state as NodeState }
    KeyStorage { backend_wire: backend as KeyBackend }
    Connectivity {
        state_wire: state as ConnectivityState,
        stranded_reason_wire: stranded_reason as StrandedReason
    }
    Event { severity_wire: severity as Severity, kind_wire: kind as EventKind }
    AuthorityInfo { kind_wire: kind as AuthorityKind, status_wire: status as AuthorityStatus }
    KeyProbeResult {
        kind_wire: kind as AuthorityKind,
        status_wire: status as AuthorityStatus,
        probe_wire: probe as KeyProbe
    }
    RunbookExecution { state_wire: state as RunbookState, phase_wire: phase as RunbookPhase }
    ImportBundleFileResponse { kind_wire: kind as BundleFileKind }
    ForeignBundleInfo { source_wire: source as ForeignBundleSource }
    FederationInfo { profile_wire: profile as FederationProfile }
    ForeignTrustDomain {
        source_wire: source as ForeignBundleSource,
        profile_wire: profile as FederationProfile,
        last_failure_wire: last_failure as FetchFailureKind,
        last_refusal_wire: last_refusal as FederationRefusal
    }
    RefreshFederationResponse {
        outcome_wire: outcome as RefreshOutcome,
        refusal_wire: refusal as FederationRefusal
    }
}

impl ForeignTrustDomain {
    /// `warnings` as sent, values this build does not know included.
    pub fn warnings_wire(&self) -> Vec<Wire<FreshnessWarning>> {
        self.warnings.iter().map(|&w| Wire::from_raw(w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{Delta, Snapshot};

    fn snapshot(
        identity: DaemonIdentity,
        node: Node,
        conn: Connectivity,
        event: Event,
    ) -> WatchMessage {
        WatchMessage {
            revision: 1,
            daemon_time_ms: 0,
            body: Some(Body::Snapshot(Snapshot {
                identity: Some(identity),
                nodes: vec![node],
                upstream: Some(conn),
                events: vec![event],
                partial: false,
                federation: None,
            })),
        }
    }

    #[test]
    fn a_message_from_a_daemon_before_the_enums_reads_as_its_text_said() {
        let mut m = snapshot(
            DaemonIdentity {
                legacy_role: "downstream".into(),
                ..Default::default()
            },
            Node {
                legacy_state: "active".into(),
                key_storage: Some(KeyStorage {
                    legacy_backend: "pkcs11".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Connectivity {
                legacy_state: "lost".into(),
                ..Default::default()
            },
            Event {
                legacy_severity: "error".into(),
                legacy_kind: "upstream-lost".into(),
                ..Default::default()
            },
        );
        adopt_legacy(&mut m);
        let Some(Body::Snapshot(s)) = m.body else {
            panic!("snapshot")
        };
        assert_eq!(s.identity.unwrap().role(), DaemonRole::Downstream);
        assert_eq!(s.nodes[0].state(), NodeState::Active);
        assert_eq!(
            s.nodes[0].key_storage.as_ref().unwrap().backend(),
            KeyBackend::Pkcs11
        );
        assert_eq!(s.upstream.unwrap().state(), ConnectivityState::Lost);
        assert_eq!(s.events[0].severity(), Severity::Error);
        assert_eq!(s.events[0].kind(), EventKind::UpstreamLost);
    }

    #[test]
    fn messages_carry_the_old_text_for_consoles_before_the_enums() {
        let mut m = WatchMessage {
            revision: 2,
            daemon_time_ms: 0,
            body: Some(Body::Delta(Delta {
                upserts: vec![Node {
                    state: NodeState::Old.into(),
                    key_storage: Some(KeyStorage {
                        backend: KeyBackend::Disk.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                upstream: Some(Connectivity {
                    state: 1234,
                    ..Default::default()
                }),
                events: vec![Event {
                    severity: Severity::Warning.into(),
                    kind: EventKind::UpstreamLost.into(),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        };
        fill_legacy(&mut m);
        let Some(Body::Delta(d)) = &m.body else {
            panic!("delta")
        };
        assert_eq!(d.upserts[0].legacy_state, "old");
        assert_eq!(
            d.upserts[0].key_storage.as_ref().unwrap().legacy_backend,
            "disk"
        );
        assert_eq!(d.events[0].legacy_severity, "warning");
        assert_eq!(d.events[0].legacy_kind, "upstream-lost");
        // A value this build does not know is not guessed at in text.
        assert_eq!(d.upstream.as_ref().unwrap().legacy_state, "");
        // Both set: the enum wins, the text is not read back.
        let before = m.clone();
        adopt_legacy(&mut m);
        assert_eq!(m, before);
    }

    fn texts_are_distinct<E: Vocabulary + fmt::Debug>() {
        let mut seen = std::collections::HashSet::new();
        for v in E::ALL {
            assert!(seen.insert(v.as_str()), "{v:?} repeats a text");
            assert_eq!(E::parse(v.as_str()), Some(*v));
            assert_eq!(Wire::<E>::from_raw((*v).into()), Wire::Known(*v));
        }
        assert!(!seen.contains(E::UNKNOWN));
    }

    #[test]
    fn every_value_has_its_own_text() {
        texts_are_distinct::<DaemonRole>();
        texts_are_distinct::<NodeKind>();
        texts_are_distinct::<KeyBackend>();
        texts_are_distinct::<NodeState>();
        texts_are_distinct::<ConnectivityState>();
        texts_are_distinct::<StrandedReason>();
        texts_are_distinct::<Severity>();
        texts_are_distinct::<EventKind>();
        texts_are_distinct::<AuthorityKind>();
        texts_are_distinct::<AuthorityStatus>();
        texts_are_distinct::<AuthorityRefusal>();
        texts_are_distinct::<BundleFileRefusal>();
        texts_are_distinct::<BundleFileKind>();
        texts_are_distinct::<ForeignBundleSource>();
        texts_are_distinct::<FederationProfile>();
        texts_are_distinct::<RefreshOutcome>();
        texts_are_distinct::<FederationRefusal>();
    }

    #[test]
    fn a_value_from_a_newer_peer_reads_as_unknown() {
        let e = Event {
            severity: 99,
            kind: 1234,
            ..Default::default()
        };
        assert_eq!(e.kind_wire(), Wire::Unknown(1234));
        assert_eq!(e.kind_wire().as_str(), "unknown");
        assert_eq!(e.severity_wire().to_string(), "unknown");
        assert!(e.kind_wire() != EventKind::Unspecified);
        assert!(!e.kind_wire().is_unspecified());
        assert!(Event::default().kind_wire().is_unspecified());
    }

    #[test]
    fn texts_are_the_published_ones() {
        assert_eq!(NodeState::NoCa.as_str(), "no CA");
        assert_eq!(NodeKind::X509Authority.to_string(), "X509_AUTHORITY");
        assert_eq!(EventKind::X509Activated.as_str(), "x509-activated");
        assert_eq!(
            DaemonRole::parse("downstream"),
            Some(DaemonRole::Downstream)
        );
        assert_eq!(DaemonRole::parse("gateway"), None);
        assert_eq!(
            format!("[{:<8}]", Wire::<DaemonRole>::Unknown(7)),
            "[unknown ]"
        );
        assert_eq!(format!("[{:>6}]", Severity::Info), "[  info]");
    }
}
