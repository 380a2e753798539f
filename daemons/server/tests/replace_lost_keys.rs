//! `--replace-lost-keys` at the CA manager, with a disk key manager whose key files are
//! deleted: without the flag the load refuses and names it; with it, exactly the authorities
//! whose key is gone are tainted, new ones are minted and activated, the bundle sequence
//! bumps with the tainted ones still in it, and one `server.replace_lost_keys` record is
//! committed; with nothing lost the flag is refused.

use std::sync::Arc;

use trustdeck_datastore::{CaKind, CaStatus, Datastore};
use trustdeck_pki::KeyManager;
use trustdeck_pki::keys::DiskKeyManager;
use trustdeck_server::ca::{CaManager, CaManagerError};

mod common;
use common::{settings, t};

async fn load(dir: &std::path::Path, replace: bool) -> Result<Arc<CaManager>, CaManagerError> {
    let ds = Datastore::open(&format!("sqlite://{}", dir.join("ds.sqlite3").display()))
        .await
        .expect("datastore");
    let km: Arc<dyn KeyManager> = Arc::new(DiskKeyManager::new(&dir.join("keys")).expect("km"));
    let mut s = settings();
    s.replace_lost_keys = replace.then(|| "operator (test)".to_string());
    CaManager::load(s, ds, km, t(10)).await.map(|(m, _)| m)
}

#[tokio::test]
async fn lost_keys_are_tainted_and_replaced_only_when_asked_and_only_when_lost() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = load(dir.path(), false).await.expect("first start");
    let before = m.snapshot();
    let x509_key = before
        .journal
        .iter()
        .find(|r| r.kind == CaKind::X509)
        .expect("x509")
        .clone();
    drop(m);
    std::fs::remove_file(
        dir.path()
            .join("keys")
            .join(format!("{}.key.pem", x509_key.key_ref)),
    )
    .expect("delete the X.509 CA key");

    let e = load(dir.path(), false).await.err().expect("refused");
    assert!(matches!(e, CaManagerError::KeyUnavailable(_)), "{e}");
    assert!(e.to_string().contains("run --replace-lost-keys"), "{e}");

    let m = load(dir.path(), true).await.expect("replaced");
    let after = m.snapshot();
    let status = |id: &str| after.journal.iter().find(|r| r.id == id).map(|r| r.status);
    assert_eq!(status(&x509_key.id), Some(CaStatus::Tainted));
    let jwt = before
        .journal
        .iter()
        .find(|r| r.kind == CaKind::Jwt)
        .expect("jwt");
    assert_eq!(
        status(&jwt.id),
        Some(CaStatus::Active),
        "its key is still there"
    );
    let active: Vec<_> = after
        .journal
        .iter()
        .filter(|r| r.kind == CaKind::X509 && r.status == CaStatus::Active)
        .collect();
    assert_eq!(active.len(), 1);
    assert_ne!(active[0].id, x509_key.id);
    assert_eq!(after.bundle.sequence, before.bundle.sequence + 1);
    assert_eq!(
        after.bundle.x509_authorities.len(),
        2,
        "the tainted root stays"
    );
    assert_eq!(
        m.x509_ca().expect("ca").cert_der(),
        trustdeck_spiffe::pem::decode_certs(
            active[0].certificate_chain_pem.as_deref().expect("chain")
        )
        .expect("pem")[0]
    );
    let ds = Datastore::open(&format!(
        "sqlite://{}",
        dir.path().join("ds.sqlite3").display()
    ))
    .await
    .expect("datastore");
    let audit = ds.list_audit(100).await.expect("audit");
    let replaced: Vec<_> = audit
        .iter()
        .filter(|r| r.action == "server.replace_lost_keys")
        .collect();
    assert_eq!(replaced.len(), 1, "{audit:?}");
    assert_eq!(replaced[0].actor, "operator (test)");
    assert!(
        replaced[0].detail.contains("active -> tainted"),
        "{:?}",
        replaced[0]
    );
    drop(m);

    // Nothing lost now: refused, nothing changes.
    let e = load(dir.path(), true).await.err().expect("refused");
    assert!(matches!(e, CaManagerError::NothingToReplace(_)), "{e}");
    let m = load(dir.path(), false).await.expect("plain start");
    let sorted = |mut j: Vec<trustdeck_datastore::CaJournalRecord>| {
        j.sort_by(|a, b| a.id.cmp(&b.id));
        j
    };
    assert_eq!(
        sorted(m.snapshot().journal.clone()),
        sorted(after.journal.clone())
    );
}
