use super::*;

const GOOD: &str = r#"
trust_domain = "example.org"
bind_address = "127.0.0.1:0"
data_dir = "/var/lib/trustdeck"
ca_ttl = "24h"
default_x509_svid_ttl = "1h"

[key_manager]
type = "disk"
"#;

#[test]
fn datastore_timeout_defaults_to_a_few_seconds_and_can_be_set() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.datastore_timeout, std::time::Duration::from_secs(5));
    let c = Config::parse(&format!("datastore_timeout = \"2s\"\n{GOOD}"), "t.toml").unwrap();
    assert_eq!(c.datastore_timeout, std::time::Duration::from_secs(2));
}

#[test]
fn audit_checkpoint_interval_defaults_to_five_minutes_and_can_be_set() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.audit_checkpoint_interval, Duration::minutes(5));
    let text = format!("audit_checkpoint_interval = \"200ms\"\n{GOOD}");
    let c = Config::parse(&text, "t.toml").unwrap();
    assert_eq!(c.audit_checkpoint_interval, Duration::milliseconds(200));
}

#[test]
fn connection_limits_are_bounded_and_override_the_defaults() {
    let with = |s: &str| Config::parse(&format!("{GOOD}\n[connections]\n{s}\n"), "t.toml");
    let c = with("idle_timeout = \"3s\"\nmax_unidentified = 5").unwrap();
    let l = c.connections.limits();
    assert_eq!(l.idle_timeout, std::time::Duration::from_secs(3));
    assert_eq!(l.max_unidentified, 5);
    let defaults = trustdeck_transport::ConnectionLimits::for_this_process();
    assert_eq!(l.handshake_timeout, defaults.handshake_timeout);
    assert_eq!(l.max_handshaking, defaults.max_handshaking);
    let e = with("idle_timeout = \"1h\"").unwrap_err().to_string();
    assert!(e.contains("connections.idle_timeout"), "{e}");
    let e = with("max_handshaking = 0").unwrap_err().to_string();
    assert!(e.contains("max_handshaking"), "{e}");
}

#[test]
fn parses_defaults() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.trust_domain.as_str(), "example.org");
    assert_eq!(c.datastore, "sqlite:///var/lib/trustdeck/datastore.sqlite3");
    assert_eq!(
        c.admin_socket,
        PathBuf::from("/var/lib/trustdeck/admin.sock")
    );
    assert_eq!(c.jwt_key_ttl, Duration::hours(24));
    assert_eq!(c.default_jwt_svid_ttl, Duration::minutes(5));
    assert_eq!(c.bundle_import_max_age, Duration::days(30));
    assert_eq!(c.key_dir(), Some(PathBuf::from("/var/lib/trustdeck/keys")));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn truncated_config_names_the_position() {
    let cut = &GOOD[..GOOD.find("ca_ttl").unwrap() + 10];
    let e = Config::parse(cut, "t.toml").unwrap_err().to_string();
    assert!(e.contains("t.toml") && e.contains("line"), "{e}");
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let e = Config::parse(&format!("{GOOD}\nca_tll = \"1h\"\n"), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("ca_tll"), "{e}");
    let e = Config::parse(&GOOD.replace("24h", "24x"), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown unit 'x'"), "{e}");
    let e = Config::parse(&GOOD.replace("example.org", "Example.org"), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("trust_domain"), "{e}");
    let e = Config::parse(&GOOD.replace("\"1h\"", "\"48h\""), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("never outlives"), "{e}");
}

#[test]
fn a_written_file_reads_back_the_same() {
    let mut f = ConfigFile::new("example.org", "/var/lib/trustdeck");
    f.name = Some("gcp".into());
    f.ca_ttl = Duration::hours(6);
    f.agent_svid_ttl = Some(Duration::minutes(10));
    f.rotation_check_interval = Duration::milliseconds(1500);
    f.key_manager = KeyManagerConfig::Pkcs11 {
        module: "/usr/lib/softhsm/libsofthsm2.so".into(),
        token_label: Some("t".into()),
        slot: None,
        key_label_prefix: "ca-".into(),
        pin_file: Some("/var/lib/trustdeck/pin".into()),
        pin_env: None,
        pin: None,
        environment: [("SOFTHSM2_CONF".to_string(), "/etc/hsm.conf".to_string())].into(),
    };
    f.upstream = Some(UpstreamConfig {
        address: "127.0.0.1:8081".into(),
        spiffe_id: None,
        workload_api_socket: "/run/agent.sock".into(),
        own_spiffe_id: Some("spiffe://example.org/gcp".into()),
        bundle_poll_interval: None,
    });
    let text = toml::to_string(&f).unwrap();
    let back: ConfigFile = trustdeck_process::parse_toml(&text, "t.toml").unwrap();
    assert_eq!(back, f, "{text}");
    let c = Config::parse(&text, "t.toml").unwrap();
    assert_eq!(c.name, "gcp");
    assert_eq!(c.rotation_check_interval, Duration::milliseconds(1500));
    assert_eq!(
        c.upstream.map(|u| u.address).as_deref(),
        Some("127.0.0.1:8081")
    );
}

/// Issue 12, defect 6: `ca_ttl = "999999999999h"` passed `check-config` and panicked at
/// `run`; `ca_ttl = "1s"` passed and could not start. Every duration has a range.
#[test]
fn every_duration_is_bounded_and_the_error_names_key_and_range() {
    let base = "trust_domain = \"example.org\"\ndata_dir = \"/var/lib/trustdeck\"\n";
    let upstream = "[upstream]\naddress = \"127.0.0.1:1\"\nworkload_api_socket = \"/run/a.sock\"\n";
    for (key, value) in [
        ("ca_ttl", "999999999999h"),
        ("ca_ttl", "36501d"),
        ("ca_ttl", "1s"),
        ("ca_ttl", "9s"),
        ("jwt_key_ttl", "999999999999h"),
        ("jwt_key_ttl", "1s"),
        ("default_x509_svid_ttl", "999999999999h"),
        ("default_x509_svid_ttl", "500ms"),
        ("default_jwt_svid_ttl", "500ms"),
        ("default_jwt_svid_ttl", "99999d"),
        ("agent_svid_ttl", "999ms"),
        ("agent_svid_ttl", "99999d"),
        ("rotation_check_interval", "1ms"),
        ("rotation_check_interval", "2h"),
        ("rotation_check_interval", "999999999999h"),
        ("datastore_timeout", "100ms"),
        ("datastore_timeout", "2m"),
        ("audit_checkpoint_interval", "10ms"),
        ("audit_checkpoint_interval", "2d"),
        ("bundle_import_max_age", "30s"),
        ("bundle_import_max_age", "400d"),
    ] {
        let text = format!("{base}{key} = \"{value}\"\n");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains(&format!("{key} = {value}")) && e.contains("allowed "),
            "{key} = {value}: {e}"
        );
    }
    for value in ["1ms", "2h", "999999999999h"] {
        let text = format!("{base}{upstream}bundle_poll_interval = \"{value}\"\n");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("upstream.bundle_poll_interval") && e.contains("allowed "),
            "{value}: {e}"
        );
    }
}

#[test]
fn the_bounds_themselves_are_accepted() {
    let text = "trust_domain = \"example.org\"\ndata_dir = \"/d\"\nca_ttl = \"36500d\"\n\
                default_x509_svid_ttl = \"3650d\"\nrotation_check_interval = \"10ms\"\n";
    let c = Config::parse(text, "t.toml").unwrap();
    assert_eq!(c.ca_ttl, Duration::days(36500));
    let text = "trust_domain = \"example.org\"\ndata_dir = \"/d\"\nca_ttl = \"10s\"\n\
                default_x509_svid_ttl = \"1s\"\ndefault_jwt_svid_ttl = \"1s\"\n\
                rotation_check_interval = \"1h\"\n";
    let c = Config::parse(text, "t.toml").unwrap();
    assert_eq!(c.ca_ttl, Duration::seconds(10));
}

#[test]
fn svid_ttl_above_a_sixth_of_ca_ttl_warns() {
    let c = Config::parse(&GOOD.replace("\"1h\"", "\"5h\""), "t.toml").unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("one sixth"));
}

#[test]
fn a_pkcs11_environment_must_be_settable() {
    let hsm = |env: &str| {
        let text = GOOD.replace(
            "type = \"disk\"",
            &format!(
                "type = \"pkcs11\"\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_file = \"/p\"\n[key_manager.environment]\n{env}"
            ),
        );
        Config::parse(&text, "t.toml")
    };
    let c = hsm("SOFTHSM2_CONF = \"/etc/hsm.conf\"").unwrap();
    let KeyManagerConfig::Pkcs11 { environment, .. } = &c.key_manager else {
        panic!("pkcs11");
    };
    assert_eq!(environment["SOFTHSM2_CONF"], "/etc/hsm.conf");
    for bad in ["\"\" = \"x\"", "\"A=B\" = \"x\"", "A = \"x\\u0000\""] {
        let e = hsm(bad).unwrap_err().to_string();
        assert!(e.contains("key_manager.environment"), "{bad}: {e}");
    }
}

/// Issue 12, defect 4: configured uids make the admin socket reachable (0666, or 0660 in
/// `socket_group`); an unknown group is an error and a socket in the 0700 data directory a
/// warning naming the uids.
#[test]
fn admin_socket_access_follows_the_configured_uids_and_group() {
    use trustdeck_admin::socket::SocketAccess;
    let with = |top: &str, admin: &str| {
        Config::parse(&format!("{top}\n{GOOD}\n[admin]\n{admin}\n"), "t.toml")
    };
    let plain = with("", "").unwrap();
    assert_eq!(plain.admin_socket_access, SocketAccess::default());
    let out = "admin_socket = \"/run/trustdeck-test/admin.sock\"";
    let uids = with(
        &format!("{out}\nadmin_allowed_uids = [4242]"),
        "viewer_uids = [4343]",
    )
    .unwrap();
    assert_eq!(uids.admin_socket_access.mode, 0o666);
    assert!(uids.warnings.is_empty(), "{:?}", uids.warnings);
    let group = with(out, "socket_group = \"root\"").unwrap();
    assert_eq!(
        group.admin_socket_access,
        SocketAccess {
            mode: 0o660,
            gid: Some(0)
        }
    );
    let e = with(out, "socket_group = \"td-no-such-group\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("admin.socket_group \"td-no-such-group\": no such group"),
        "{e}"
    );
    let hidden = with("", "viewer_uids = [4343]").unwrap();
    assert!(
        hidden
            .warnings
            .iter()
            .any(|w| w.contains("inside the data directory")
                && w.contains("uid 4343 cannot reach it")),
        "{:?}",
        hidden.warnings
    );
}
