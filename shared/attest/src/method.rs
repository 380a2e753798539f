//! The node attestation methods, by their wire names.

/// A node attestation method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A single-use token issued by an operator.
    JoinToken,
    /// Proof of possession of a node certificate's key.
    X509pop,
    /// A DevID key resident in the node's TPM 2.0.
    TpmDevid,
}

impl Method {
    /// Every method, in the order errors list them.
    pub const ALL: [Method; 3] = [Method::JoinToken, Method::X509pop, Method::TpmDevid];

    /// The name in `AttestParams.attestation_type` and in stored node records.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::JoinToken => "join_token",
            Method::X509pop => "x509pop",
            Method::TpmDevid => "tpm_devid",
        }
    }

    /// The method named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Method> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
