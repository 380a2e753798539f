//! What happened to the server's authorities, for the log and the admin stream's events.

use trustdeck_datastore::CaKind;

/// The kind of a [`CaEvent`]; its stable name is the admin stream's event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaEventKind {
    /// A successor was minted and published in the bundle.
    Prepared(CaKind),
    /// An authority started signing.
    Activated(CaKind),
    /// Expired authorities were removed from the journal and the bundle.
    Pruned,
    /// A stored authority's key is gone (a memory key after a restart): it never signs again.
    KeyUnavailable,
    /// A stored authority could not be rebuilt from its journal record.
    Unusable,
    /// A rotation round failed; the next one retries.
    RotationFailed,
}

impl CaEventKind {
    /// The stable name: `x509-prepared`, `jwt-activated`, `pruned`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            CaEventKind::Prepared(CaKind::X509) => "x509-prepared",
            CaEventKind::Prepared(CaKind::Jwt) => "jwt-prepared",
            CaEventKind::Activated(CaKind::X509) => "x509-activated",
            CaEventKind::Activated(CaKind::Jwt) => "jwt-activated",
            CaEventKind::Pruned => "pruned",
            CaEventKind::KeyUnavailable => "key-unavailable",
            CaEventKind::Unusable => "ca-unusable",
            CaEventKind::RotationFailed => "rotation-failed",
        }
    }
}

impl std::fmt::Display for CaEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to the server's authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaEvent {
    pub kind: CaEventKind,
    /// The same for operators, naming the authority.
    pub message: String,
}

impl CaEvent {
    pub(crate) fn new(kind: CaEventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
