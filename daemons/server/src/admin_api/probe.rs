//! `ProbeKeys`: each authority of the CA journal this server signs with (active and prepared,
//! X.509 and JWT; a downstream's intermediates) has its key loaded afresh from the key manager,
//! signs a fixed probe message, and the signature is checked against the public key the
//! journal recorded for it. Each key is bounded by [`PROBE_TIMEOUT`]: a token that hangs reads
//! UNREACHABLE. Nothing changes and nothing is audited.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use trustdeck_datastore::{CaJournalRecord, CaStatus};
use trustdeck_pki::keys::p256_spki_from_point;
use trustdeck_pki::{KeyError, KeyManager};
use trustdeck_proto::admin::{KeyProbe, KeyProbeResult, ProbeKeysResponse};

use super::authority::{api_kind, api_status, key_storage};
use crate::ca::taint::record_key_id;
use crate::ctx::ServerCtx;

/// How long one key may take to load and sign.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the probe signs (never anything a relying party would accept: it names itself).
pub const PROBE_MESSAGE: &[u8] = b"trustdeck key probe: this signature proves key possession only";

/// How long a probe's answer is reused.
pub const PROBE_REUSE: Duration = Duration::from_secs(2);

/// One probe at a time, its answer reused for [`PROBE_REUSE`]: callers polling `ProbeKeys`
/// (a runbook waiting on `keys_answer`, a viewer in a loop) never queue signatures on the
/// token ahead of real issuance; they wait for the one probe under way and share its answer.
#[derive(Default)]
pub struct ProbeGate {
    last: tokio::sync::Mutex<Option<(std::time::Instant, ProbeKeysResponse)>>,
    /// Shared with every other probe of this server (an activation's).
    pub slots: ProbeSlots,
}

impl ProbeGate {
    /// The last answer if it is recent, else a new probe of `ctx`'s keys.
    pub async fn probe(&self, ctx: &ServerCtx) -> ProbeKeysResponse {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = last.as_ref()
            && at.elapsed() < PROBE_REUSE
        {
            return r.clone();
        }
        let r = probe_keys(ctx, &self.slots).await;
        *last = Some((std::time::Instant::now(), r.clone()));
        r
    }
}

/// Probes every key of `ctx`'s journal that the server signs with.
pub async fn probe_keys(ctx: &ServerCtx, slots: &ProbeSlots) -> ProbeKeysResponse {
    let km = ctx.ca.key_manager();
    let st = ctx.ca.snapshot();
    let mut records: Vec<&CaJournalRecord> = st
        .journal
        .iter()
        .filter(|r| matches!(r.status, CaStatus::Active | CaStatus::Prepared))
        .collect();
    records.sort_by(|a, b| {
        (a.kind.as_str(), a.created_at, &a.id).cmp(&(b.kind.as_str(), b.created_at, &b.id))
    });
    let mut keys = Vec::with_capacity(records.len());
    for r in records {
        keys.push(probe_one(slots, km.clone(), r, PROBE_TIMEOUT).await);
    }
    ProbeKeysResponse { keys }
}

/// Most probes under way at once on one server. Each holds a blocking thread until the key
/// manager answers, also after its caller gave up on it: a token that hangs ties up at most
/// this many threads, and a probe beyond them reads UNREACHABLE at once.
pub const MAX_UNDER_WAY: usize = 4;

/// The probes under way on one server (see [`MAX_UNDER_WAY`]).
#[derive(Debug, Default, Clone)]
pub struct ProbeSlots(Arc<AtomicUsize>);

/// One probe under way; counted down when its blocking task ends.
struct UnderWay(Arc<AtomicUsize>);

impl ProbeSlots {
    fn take(&self) -> Option<UnderWay> {
        if self.0.fetch_add(1, Ordering::SeqCst) >= MAX_UNDER_WAY {
            self.0.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(UnderWay(self.0.clone()))
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Loads `r`'s key from `km`, signs [`PROBE_MESSAGE`] and verifies it, within `timeout`.
pub async fn probe_one(
    slots: &ProbeSlots,
    km: Arc<dyn KeyManager>,
    r: &CaJournalRecord,
    timeout: Duration,
) -> KeyProbeResult {
    let (probe, detail) = match slots.take() {
        Some(slot) => sign_and_check(km, r, timeout, slot).await,
        None => (
            KeyProbe::Unreachable,
            format!(
                "{MAX_UNDER_WAY} earlier probes still wait on the key manager: it does not answer"
            ),
        ),
    };
    KeyProbeResult {
        kind: api_kind(r.kind).into(),
        id: record_key_id(r),
        status: api_status(r.status).into(),
        key_storage: Some(key_storage(&r.key_backend)),
        probe: probe.into(),
        detail,
    }
}

async fn sign_and_check(
    km: Arc<dyn KeyManager>,
    r: &CaJournalRecord,
    timeout: Duration,
    slot: UnderWay,
) -> (KeyProbe, String) {
    let key_ref = r.key_ref.clone();
    let signing = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let key = km.load(&key_ref)?;
        let sig = key.sign(PROBE_MESSAGE)?;
        Ok::<_, KeyError>((key.public_point().to_vec(), sig))
    });
    match tokio::time::timeout(timeout, signing).await {
        Err(_) => (
            KeyProbe::Unreachable,
            format!(
                "the key manager did not answer within {}s",
                timeout.as_secs()
            ),
        ),
        Ok(Err(e)) => (KeyProbe::Unreachable, format!("the probe failed: {e}")),
        Ok(Ok(Err(e @ KeyError::NotFound { .. }))) => (KeyProbe::Missing, e.to_string()),
        Ok(Ok(Err(e))) => (KeyProbe::Unreachable, e.to_string()),
        Ok(Ok(Ok((point, sig)))) => verify(r, &point, &sig),
    }
}

/// Checks a probe signature against the public key the journal recorded for `r`.
fn verify(r: &CaJournalRecord, point: &[u8], sig: &[u8]) -> (KeyProbe, String) {
    let Some(spki) = r
        .public_key_der_b64
        .as_deref()
        .and_then(|b| B64.decode(b).ok())
    else {
        return (
            KeyProbe::WrongKey,
            "the journal records no readable public key to check the signature against".into(),
        );
    };
    // The journal's key is a P-256 SubjectPublicKeyInfo: its last 65 bytes are the point,
    // provided it re-encodes to the same bytes.
    let journal_point = spki
        .get(spki.len().saturating_sub(65)..)
        .unwrap_or_default();
    if p256_spki_from_point(journal_point) != spki {
        return (
            KeyProbe::WrongKey,
            "the journal's public key is not a P-256 key".into(),
        );
    }
    match UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, journal_point).verify(PROBE_MESSAGE, sig)
    {
        Ok(()) => (KeyProbe::Ok, String::new()),
        Err(_) if point != journal_point => (
            KeyProbe::WrongKey,
            "the key manager holds a different key under this id".into(),
        ),
        Err(_) => (
            KeyProbe::WrongKey,
            "the signature does not verify against the authority's public key".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use trustdeck_datastore::CaKind;
    use trustdeck_pki::keys::MemoryKeyManager;

    use super::*;

    fn record(km: &dyn KeyManager, id: &str) -> CaJournalRecord {
        let key = km.generate(id).expect("key");
        CaJournalRecord {
            id: id.into(),
            kind: CaKind::Jwt,
            status: CaStatus::Active,
            key_backend: "memory".into(),
            key_ref: id.into(),
            certificate_chain_pem: None,
            public_key_der_b64: Some(B64.encode(key.public_key_spki())),
            kid: Some(format!("kid-{id}")),
            not_before: 0,
            not_after: 10,
            created_at: 0,
        }
    }

    /// A key manager whose token never answers.
    struct Hung;
    impl KeyManager for Hung {
        fn backend(&self) -> &'static str {
            "pkcs11"
        }
        fn generate(&self, _: &str) -> Result<Arc<dyn trustdeck_pki::SigningKey>, KeyError> {
            unreachable_backend()
        }
        fn load(&self, _: &str) -> Result<Arc<dyn trustdeck_pki::SigningKey>, KeyError> {
            std::thread::sleep(Duration::from_secs(2));
            unreachable_backend()
        }
        fn delete(&self, _: &str) -> Result<(), KeyError> {
            Ok(())
        }
    }

    fn unreachable_backend() -> Result<Arc<dyn trustdeck_pki::SigningKey>, KeyError> {
        Err(KeyError::Backend {
            backend: "pkcs11".into(),
            reason: "CKR_DEVICE_REMOVED".into(),
        })
    }

    #[tokio::test]
    async fn a_held_key_reads_ok_a_deleted_one_missing() {
        let slots = ProbeSlots::default();
        let km: Arc<dyn KeyManager> = Arc::new(MemoryKeyManager::new());
        let r = record(km.as_ref(), "jwt-a");
        let ok = probe_one(&slots, km.clone(), &r, PROBE_TIMEOUT).await;
        assert_eq!((ok.probe(), ok.id.as_str()), (KeyProbe::Ok, "kid-jwt-a"));
        km.delete("jwt-a").expect("delete");
        let gone = probe_one(&slots, km, &r, PROBE_TIMEOUT).await;
        assert_eq!(gone.probe(), KeyProbe::Missing, "{}", gone.detail);
    }

    #[tokio::test]
    async fn another_key_under_the_id_reads_wrong_key() {
        let slots = ProbeSlots::default();
        let km: Arc<dyn KeyManager> = Arc::new(MemoryKeyManager::new());
        let mut r = record(km.as_ref(), "jwt-a");
        let other = record(km.as_ref(), "jwt-b");
        r.public_key_der_b64 = other.public_key_der_b64.clone();
        let p = probe_one(&slots, km.clone(), &r, PROBE_TIMEOUT).await;
        assert_eq!(p.probe(), KeyProbe::WrongKey, "{}", p.detail);
        r.public_key_der_b64 = Some("not base64!".into());
        assert_eq!(
            probe_one(&slots, km, &r, PROBE_TIMEOUT).await.probe(),
            KeyProbe::WrongKey
        );
    }

    #[tokio::test]
    async fn a_hung_token_ties_up_a_bounded_number_of_threads() {
        let slots = ProbeSlots::default();
        let km: Arc<dyn KeyManager> = Arc::new(Hung);
        let r = record(&MemoryKeyManager::new(), "x509-a");
        for _ in 0..MAX_UNDER_WAY {
            let p = probe_one(&slots, km.clone(), &r, Duration::from_millis(50)).await;
            assert!(p.detail.contains("did not answer"), "{}", p.detail);
        }
        // Every earlier probe's thread still waits on the token: no new thread is taken.
        let start = std::time::Instant::now();
        let p = probe_one(&slots, km.clone(), &r, Duration::from_secs(5)).await;
        assert_eq!(p.probe(), KeyProbe::Unreachable);
        assert!(
            p.detail.contains("earlier probes still wait"),
            "{}",
            p.detail
        );
        assert!(start.elapsed() < Duration::from_millis(500));
        // Once they end, probes run again.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let p = probe_one(&slots, km, &r, Duration::from_secs(5)).await;
        assert!(p.detail.contains("CKR_DEVICE_REMOVED"), "{}", p.detail);
    }

    #[tokio::test]
    async fn a_hung_or_failing_token_reads_unreachable_in_bounded_time() {
        let slots = ProbeSlots::default();
        let km: Arc<dyn KeyManager> = Arc::new(Hung);
        let r = record(&MemoryKeyManager::new(), "x509-a");
        let start = std::time::Instant::now();
        let p = probe_one(&slots, km.clone(), &r, Duration::from_millis(200)).await;
        assert_eq!(p.probe(), KeyProbe::Unreachable);
        assert!(p.detail.contains("did not answer"), "{}", p.detail);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "bounded by the timeout"
        );
        let p = probe_one(&slots, km, &r, Duration::from_secs(5)).await;
        assert_eq!(p.probe(), KeyProbe::Unreachable);
        assert!(p.detail.contains("CKR_DEVICE_REMOVED"), "{}", p.detail);
    }
}
