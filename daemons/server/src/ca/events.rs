//! What happened to the server's authorities, for the log and the admin stream's events.

use trustdeck_datastore::CaKind;
use trustdeck_proto::admin::EventKind;

/// Something that happened to the server's authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaEvent {
    /// The admin stream's kind of event.
    pub kind: EventKind,
    /// The same for operators, naming the authority.
    pub message: String,
}

impl CaEvent {
    pub(crate) fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The event of a successor of `kind` being published.
pub fn prepared(kind: CaKind) -> EventKind {
    match kind {
        CaKind::X509 => EventKind::X509Prepared,
        CaKind::Jwt => EventKind::JwtPrepared,
    }
}

/// The event of an authority of `kind` starting to sign.
pub fn activated(kind: CaKind) -> EventKind {
    match kind {
        CaKind::X509 => EventKind::X509Activated,
        CaKind::Jwt => EventKind::JwtActivated,
    }
}
