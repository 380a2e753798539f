//! `[federation]`, checked without touching the disk (the certificate and key files are read
//! by `check-config` and at start: [`crate::federation::endpoint::load_web_identity`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Duration;
use trustdeck_pki::bounds::DurationRange;
use trustdeck_process::absolute_path;

use super::{BundleEndpointProfileName, FederationSection};

/// A `spiffe_refresh_hint` an endpoint may serve.
const REFRESH_HINT: DurationRange = DurationRange {
    min: Duration::seconds(1),
    max: Duration::days(7),
};

/// `federation.refresh_minimum`: from a second (tests) to a day.
const REFRESH_MINIMUM: DurationRange = DurationRange {
    min: Duration::seconds(1),
    max: Duration::days(1),
};

/// `federation.refresh_minimum`, checked (default: SPIRE's one minute).
pub(super) fn refresh_minimum(raw: &FederationSection) -> Result<Duration, String> {
    match raw.refresh_minimum {
        None => Ok(trustdeck_federation::SPIRE_MINIMUM_REFRESH),
        Some(d) => REFRESH_MINIMUM
            .check("federation.refresh_minimum", d)
            .map_err(|e| e.to_string()),
    }
}

/// A checked `[federation.bundle_endpoint]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEndpoint {
    /// Listen address (port 0 picks a free port).
    pub bind_address: SocketAddr,
    /// What the endpoint presents.
    pub profile: ServingProfile,
    /// The `spiffe_refresh_hint` served instead of the bundle's own.
    pub refresh_hint: Option<Duration>,
}

/// What a bundle endpoint presents in its TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServingProfile {
    /// A serving certificate and its key, from PEM files.
    HttpsWeb {
        certificate_path: PathBuf,
        key_path: PathBuf,
    },
    /// The server's own X509-SVID, renewed as it rotates.
    HttpsSpiffe,
}

/// Checks `[federation]`; `downstream` when the server has an `[upstream]`.
pub(super) fn check(
    raw: &FederationSection,
    downstream: bool,
) -> Result<Option<BundleEndpoint>, String> {
    let Some(e) = &raw.bundle_endpoint else {
        return Ok(None);
    };
    if downstream {
        return Err(
            "federation.bundle_endpoint: only a server holding its trust domain's root \
             (no [upstream]) serves the bundle to other trust domains; configure it on the \
             upstream server"
                .into(),
        );
    }
    let bind_address: SocketAddr = e.bind_address.parse().map_err(|err| {
        format!(
            "federation.bundle_endpoint.bind_address {:?} is not an IP:port address: {err}",
            e.bind_address
        )
    })?;
    let profile = match (e.profile, &e.certificate_path, &e.key_path) {
        (BundleEndpointProfileName::HttpsWeb, Some(cert), Some(key)) => {
            absolute_path("federation.bundle_endpoint.certificate_path", cert)
                .map_err(|e| e.to_string())?;
            absolute_path("federation.bundle_endpoint.key_path", key).map_err(|e| e.to_string())?;
            ServingProfile::HttpsWeb {
                certificate_path: cert.clone(),
                key_path: key.clone(),
            }
        }
        (BundleEndpointProfileName::HttpsWeb, _, _) => {
            return Err("federation.bundle_endpoint: profile \"https_web\" needs \
                 certificate_path and key_path (PEM files of the serving certificate and key)"
                .into());
        }
        (BundleEndpointProfileName::HttpsSpiffe, None, None) => ServingProfile::HttpsSpiffe,
        (BundleEndpointProfileName::HttpsSpiffe, _, _) => {
            return Err(
                "federation.bundle_endpoint: profile \"https_spiffe\" presents the \
                 server's own X509-SVID; certificate_path and key_path belong to \"https_web\""
                    .into(),
            );
        }
    };
    let refresh_hint = e
        .refresh_hint
        .map(|d| REFRESH_HINT.check("federation.bundle_endpoint.refresh_hint", d))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Some(BundleEndpoint {
        bind_address,
        profile,
        refresh_hint,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const UPSTREAM: &str = r#"
trust_domain = "example.org"
data_dir = "/var/lib/trustdeck"
"#;

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{UPSTREAM}{extra}"), "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn refresh_minimum_defaults_to_spire_and_is_bounded() {
        assert_eq!(
            parse("").expect("valid").federation_refresh_minimum,
            Duration::minutes(1)
        );
        let c = parse("[federation]\nrefresh_minimum = \"2s\"\n").expect("valid");
        assert_eq!(c.federation_refresh_minimum, Duration::seconds(2));
        for bad in ["0s", "2d"] {
            let e = parse(&format!("[federation]\nrefresh_minimum = \"{bad}\"\n")).unwrap_err();
            assert!(e.contains("federation.refresh_minimum"), "{bad}: {e}");
        }
    }

    #[test]
    fn no_section_no_endpoint() {
        assert_eq!(parse("").expect("valid").bundle_endpoint, None);
    }

    #[test]
    fn https_web_needs_absolute_certificate_and_key() {
        let c = parse(
            "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\nprofile = \"https_web\"\n\
             certificate_path = \"/etc/td/web.pem\"\nkey_path = \"/etc/td/web.key\"\n\
             refresh_hint = \"30s\"\n",
        )
        .expect("valid");
        assert_eq!(
            c.bundle_endpoint,
            Some(BundleEndpoint {
                bind_address: "127.0.0.1:0".parse().expect("addr"),
                profile: ServingProfile::HttpsWeb {
                    certificate_path: "/etc/td/web.pem".into(),
                    key_path: "/etc/td/web.key".into(),
                },
                refresh_hint: Some(Duration::seconds(30)),
            })
        );
        let e = parse(
            "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\nprofile = \"https_web\"\n",
        )
        .unwrap_err();
        assert!(e.contains("needs certificate_path and key_path"), "{e}");
        let e = parse(
            "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\nprofile = \"https_web\"\n\
             certificate_path = \"web.pem\"\nkey_path = \"/etc/td/web.key\"\n",
        )
        .unwrap_err();
        assert!(e.contains("certificate_path"), "{e}");
    }

    #[test]
    fn https_spiffe_takes_no_files() {
        let section = "[federation.bundle_endpoint]\nbind_address = \"[::1]:8443\"\n\
                       profile = \"https_spiffe\"\n";
        let c = parse(section).expect("valid");
        assert_eq!(
            c.bundle_endpoint.map(|e| e.profile),
            Some(ServingProfile::HttpsSpiffe)
        );
        let e = parse(&format!("{section}key_path = \"/k.pem\"\n")).unwrap_err();
        assert!(e.contains("belong to \"https_web\""), "{e}");
    }

    #[test]
    fn bad_profile_address_or_hint_is_refused() {
        let e = parse(
            "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\nprofile = \"http\"\n",
        )
        .unwrap_err();
        assert!(e.contains("https_web"), "{e}");
        let e = parse(
            "[federation.bundle_endpoint]\nbind_address = \"localhost\"\nprofile = \"https_spiffe\"\n",
        )
        .unwrap_err();
        assert!(e.contains("not an IP:port address"), "{e}");
        let e = parse(
            "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\nprofile = \"https_spiffe\"\n\
             refresh_hint = \"30d\"\n",
        )
        .unwrap_err();
        assert!(e.contains("refresh_hint"), "{e}");
    }

    #[test]
    fn a_downstream_serves_no_bundle_endpoint() {
        let e = parse(
            "[upstream]\naddress = \"127.0.0.1:8081\"\nworkload_api_socket = \"/run/a.sock\"\n\
             [federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\nprofile = \"https_spiffe\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("only a server holding its trust domain's root"),
            "{e}"
        );
    }
}
