//! End-to-end (issue 14): `ProbeKeys` on a server whose keys live in a real SoftHSM2 token:
//! every active key answers OK; a key deleted from the token behind the server's back reads
//! MISSING or UNREACHABLE, never OK; so does every key once the token's files are removed.

use std::time::Duration;

use trustdeck_e2e::hsm::SoftHsm;
use trustdeck_e2e::*;
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;
use trustdeck_proto::admin::*;

const PIN: &str = "td-pin-4817";

/// Probes until `changed` says the answer tells the change (the server reuses an answer for
/// up to 2 s), at most 10 s; returns the last answer.
async fn probe_after_change(
    server: &ServerProc,
    changed: impl Fn(&[KeyProbeResult]) -> bool,
) -> Vec<KeyProbeResult> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let keys = probe(server).await;
        if changed(&keys) || std::time::Instant::now() > deadline {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn probe(server: &ServerProc) -> Vec<KeyProbeResult> {
    let path = server.info().admin_socket.clone();
    let ch = trustdeck_transport::connect::watch_channel_uds(path).expect("channel");
    let started = std::time::Instant::now();
    let keys = ServerAdminClient::new(ch)
        .probe_keys(ProbeKeysRequest {})
        .await
        .expect("probe")
        .into_inner()
        .keys;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the probe is bounded per key"
    );
    keys
}

fn x509_label(hsm: &SoftHsm) -> String {
    let objects = hsm.list_objects();
    objects
        .split("Private Key Object")
        .skip(1)
        .filter_map(|o| o.lines().find(|l| l.trim_start().starts_with("label:")))
        .map(|l| {
            l.trim_start()
                .trim_start_matches("label:")
                .trim()
                .to_string()
        })
        .find(|l| l.starts_with("td-x509"))
        .unwrap_or_else(|| panic!("an X.509 CA key in the token:\n{objects}"))
}

#[tokio::test]
async fn probes_tell_a_lost_hsm_key_from_a_held_one() {
    let hsm = SoftHsm::new("trustdeck-probe", PIN);
    let pin_file = hsm.pin_file(PIN);
    let env = hsm.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProc::start_with_env(&hsm.key_manager_toml(&pin_file), &env);

    let keys = probe(&server).await;
    let kinds: Vec<AuthorityKind> = keys.iter().map(|k| k.kind()).collect();
    assert!(
        kinds.contains(&AuthorityKind::X509) && kinds.contains(&AuthorityKind::Jwt),
        "{keys:?}"
    );
    for k in &keys {
        assert_eq!(k.probe(), KeyProbe::Ok, "{k:?}");
        assert_eq!(
            k.key_storage.as_ref().map(|s| s.backend()),
            Some(KeyBackend::Pkcs11),
            "{k:?}"
        );
        assert!(!k.id.is_empty());
    }

    // The X.509 CA key is deleted from the token while the server runs.
    let label = x509_label(&hsm);
    hsm.delete_private_key(&label);
    let keys = probe_after_change(&server, |ks| {
        ks.iter()
            .any(|k| k.kind() == AuthorityKind::X509 && k.probe() != KeyProbe::Ok)
    })
    .await;
    let x509 = keys
        .iter()
        .find(|k| k.kind() == AuthorityKind::X509)
        .expect("x509");
    assert!(
        matches!(x509.probe(), KeyProbe::Missing | KeyProbe::Unreachable),
        "{x509:?}"
    );
    assert!(!x509.detail.is_empty());
    let jwt = keys
        .iter()
        .find(|k| k.kind() == AuthorityKind::Jwt)
        .expect("jwt");
    assert_eq!(
        jwt.probe(),
        KeyProbe::Ok,
        "the other key is still held: {jwt:?}"
    );

    // The token's files are removed: nothing reads OK any more.
    let tokens = hsm.dir.path().join("tokens");
    for entry in std::fs::read_dir(&tokens).expect("token dir") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).expect("remove token");
        } else {
            std::fs::remove_file(&p).expect("remove token file");
        }
    }
    let keys = probe_after_change(&server, |ks| ks.iter().all(|k| k.probe() != KeyProbe::Ok)).await;
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(
            matches!(k.probe(), KeyProbe::Missing | KeyProbe::Unreachable),
            "{k:?}"
        );
    }
}
