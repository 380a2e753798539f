//! CA and JWT key rotation driven by an injected clock, against a real SQLite datastore and
//! disk key manager: prepare, publish, activate, prune, and a restart in the middle.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use trustdeck_datastore::{CaKind, CaStatus, Datastore};
use trustdeck_pki::KeyManager;
use trustdeck_pki::keys::DiskKeyManager;
use trustdeck_proto::admin::EventKind;
use trustdeck_server::ca::CaManager;

mod common;
use common::{settings, t};

async fn open(dir: &std::path::Path, now: DateTime<Utc>) -> Arc<CaManager> {
    let ds = Datastore::open(&format!("sqlite://{}", dir.join("ds.sqlite3").display()))
        .await
        .expect("datastore");
    let km: Arc<dyn KeyManager> = Arc::new(DiskKeyManager::new(&dir.join("keys")).expect("km"));
    CaManager::load(settings(), ds, km, now)
        .await
        .expect("load")
        .0
}

fn statuses(m: &CaManager, kind: CaKind) -> Vec<CaStatus> {
    m.snapshot()
        .journal
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.status)
        .collect()
}

#[tokio::test]
async fn rotation_phases_with_injected_clock_and_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), t(0)).await;
    let b0 = m.bundle();
    assert_eq!(b0.sequence, 1);
    assert_eq!(b0.x509_authorities.len(), 1);
    assert_eq!(b0.jwt_authorities.len(), 1);
    let root0 = b0.x509_authorities[0].clone();
    assert_eq!(m.x509_ca().expect("ca").cert_der(), root0.as_slice());

    // Before half life: nothing changes.
    assert!(m.rotate(t(299)).await.expect("rotate").is_empty());
    assert_eq!(m.bundle().sequence, 1);

    // Half life: a successor is prepared and published, but the old one still signs.
    let ev = m.rotate(t(300)).await.expect("rotate");
    assert!(
        ev.iter().any(|e| e.kind == EventKind::X509Prepared),
        "{ev:?}"
    );
    let b1 = m.bundle();
    assert_eq!(b1.sequence, 2);
    assert_eq!(b1.x509_authorities.len(), 2);
    assert_eq!(b1.jwt_authorities.len(), 2);
    assert_eq!(m.x509_ca().expect("ca").cert_der(), root0.as_slice());
    assert_eq!(
        statuses(&m, CaKind::X509),
        vec![CaStatus::Active, CaStatus::Prepared]
    );

    // Restart between preparation and activation: same authorities, same sequence.
    drop(m);
    let m = open(dir.path(), t(400)).await;
    assert_eq!(m.bundle().sequence, 2);
    assert_eq!(m.bundle().x509_authorities, b1.x509_authorities);
    assert_eq!(m.x509_ca().expect("ca").cert_der(), root0.as_slice());

    // Five sixths: the prepared one becomes active; the old root stays trusted.
    let ev = m.rotate(t(500)).await.expect("rotate");
    assert!(
        ev.iter().any(|e| e.kind == EventKind::X509Activated),
        "{ev:?}"
    );
    assert_ne!(m.x509_ca().expect("ca").cert_der(), root0.as_slice());
    assert!(m.bundle().x509_authorities.contains(&root0));
    assert_eq!(
        statuses(&m, CaKind::X509),
        vec![CaStatus::Old, CaStatus::Active]
    );
    // Activation does not change the set of authorities, so the sequence stays.
    assert_eq!(m.bundle().sequence, 2);

    // The old root expires: it is pruned from journal, bundle and key store.
    let old_key = m.snapshot().journal[0].key_ref.clone();
    let ev = m.rotate(t(600)).await.expect("rotate");
    assert!(ev.iter().any(|e| e.kind == EventKind::Pruned), "{ev:?}");
    let b3 = m.bundle();
    assert_eq!(b3.sequence, 3);
    assert!(!b3.x509_authorities.contains(&root0));
    assert!(
        !dir.path()
            .join("keys")
            .join(format!("{old_key}.key.pem"))
            .exists()
    );

    // JWT-SVIDs minted now are signed by a key in the bundle.
    let sub = trustdeck_spiffe::SpiffeId::parse("spiffe://example.org/w").expect("id");
    let (token, exp) = m
        .mint_jwt_svid(&sub, &["aud".into()], Duration::seconds(300), t(601))
        .expect("jwt");
    assert!(exp <= t(601) + Duration::seconds(300));
    let v = trustdeck_spiffe::jwt::validate(&token, "aud", &b3.jwt_authorities, t(602))
        .expect("valid JWT");
    assert_eq!(v.spiffe_id, sub);
}

#[tokio::test]
async fn down_longer_than_the_ca_lifetime_recovers_with_a_new_ca() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), t(0)).await;
    let root0 = m.bundle().x509_authorities[0].clone();
    drop(m);
    // Restarted long after everything expired.
    let m = open(dir.path(), t(5000)).await;
    let ca = m.x509_ca().expect("ca");
    assert!(ca.window().contains(t(5000)));
    assert!(!m.bundle().x509_authorities.contains(&root0));
    assert_eq!(m.bundle().x509_authorities.len(), 1);
}
