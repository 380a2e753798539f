//! The `pkcs11` key manager: CA and JWT keys generated inside a PKCS#11 token (an HSM, or
//! SoftHSM2 in tests), sensitive and non-extractable; every signature is made by the token.
//!
//! Keys are EC P-256 pairs labelled `<prefix><key id>` (CKA_LABEL and CKA_ID). The token signs
//! a SHA-256 digest with plain `CKM_ECDSA` (what every token offers); the raw `r‖s` result is
//! DER-encoded here. One PKCS#11 context per module per process (a second `C_Initialize`
//! fails), shared by every key manager using that module.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use crate::keys::{KeyError, KeyManager, KeyStorage, SigningKey};

/// DER of the named curve OID for P-256 (1.2.840.10045.3.1.7), as CKA_EC_PARAMS.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

pub use cryptoki::types::AuthPin;

/// Where the token is and how to log in. The PIN is never part of a config file.
#[derive(Clone)]
pub struct Pkcs11Settings {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token, by label.
    pub token_label: Option<String>,
    /// The token, by slot id (when no label is given).
    pub slot: Option<u64>,
    /// Prefix of every key label.
    pub key_label_prefix: String,
    /// The user PIN (zeroized when dropped).
    pub pin: AuthPin,
}

impl fmt::Debug for Pkcs11Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Settings")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("slot", &self.slot)
            .field("key_label_prefix", &self.key_label_prefix)
            .field("pin", &"<redacted>")
            .finish()
    }
}

fn backend_err(reason: impl Into<String>) -> KeyError {
    KeyError::Backend {
        backend: "pkcs11".into(),
        reason: reason.into(),
    }
}

fn ck(what: &str) -> impl FnOnce(CkError) -> KeyError + '_ {
    move |e| backend_err(format!("{what}: {e}"))
}

/// The process-wide context for a module.
fn context(module: &Path) -> Result<Arc<Pkcs11>, KeyError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Arc<Pkcs11>>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(c) = map.get(module) {
        return Ok(c.clone());
    }
    if !module.is_file() {
        return Err(backend_err(format!(
            "PKCS#11 module {} does not exist",
            module.display()
        )));
    }
    let ctx = Pkcs11::new(module).map_err(|e| {
        backend_err(format!(
            "cannot load PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(backend_err(format!(
                "C_Initialize of {} failed: {e}",
                module.display()
            )));
        }
    }
    let ctx = Arc::new(ctx);
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// A raw `r‖s` ECDSA signature of an impossible length (odd, empty, or above P-521's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("raw ECDSA signature of {0} bytes")]
pub struct RawSignatureLength(pub usize);

/// DER ECDSA-Sig-Value from a raw `r‖s` signature.
pub fn raw_ecdsa_to_der(raw: &[u8]) -> Result<Vec<u8>, RawSignatureLength> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > 132 {
        return Err(RawSignatureLength(raw.len()));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    fn int(v: &[u8]) -> Vec<u8> {
        let mut v: &[u8] = v;
        while v.len() > 1 && v[0] == 0 {
            v = &v[1..];
        }
        let mut out = vec![0x02];
        if v[0] & 0x80 != 0 {
            out.push((v.len() + 1) as u8);
            out.push(0);
        } else {
            out.push(v.len() as u8);
        }
        out.extend_from_slice(v);
        out
    }
    let (r, s) = (int(r), int(s));
    let len = r.len() + s.len();
    let mut out = vec![0x30];
    if len >= 0x80 {
        out.push(0x81);
    }
    out.push(len as u8);
    out.extend(r);
    out.extend(s);
    Ok(out)
}

/// The SEC1 point from CKA_EC_POINT (a DER OCTET STRING around it, or the bare point).
fn ec_point(attr: &[u8]) -> Result<Vec<u8>, KeyError> {
    let point = match attr {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        [0x04, 0x81, 0x41, rest @ ..] if rest.len() == 65 => rest,
        bare if bare.len() == 65 && bare[0] == 0x04 => bare,
        _ => {
            return Err(backend_err(format!(
                "CKA_EC_POINT of {} bytes is not a P-256 point",
                attr.len()
            )));
        }
    };
    Ok(point.to_vec())
}

/// What it takes to open a fresh, logged-in session after the token lost ours (HSM reboot,
/// failover, a session closed or logged out underneath us).
struct Recovery {
    ctx: Arc<Pkcs11>,
    slot: Slot,
    pin: AuthPin,
    token: String,
}

impl Recovery {
    /// A new read-write session, logged in as the user.
    fn open_session(&self) -> Result<Session, KeyError> {
        let token = &self.token;
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(ck("opening a session"))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(backend_err(format!(
                "PIN rejected by token {token:?} (CKR_PIN_INCORRECT)"
            ))),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(backend_err(format!(
                "token {token:?} has its user PIN locked"
            ))),
            Err(e) => Err(backend_err(format!("login to token {token:?}: {e}"))),
        }
    }
}

/// Token errors after which a new session (and a fresh key handle) may succeed.
fn recoverable(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

/// The one object of `class` labelled `label` with CKA_ID `key_id`; none or several is an
/// error (never a guess).
fn find_one_in(
    session: &Session,
    class: ObjectClass,
    label: &str,
    key_id: &str,
    token: &str,
) -> Result<ObjectHandle, KeyError> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(key_id.as_bytes().to_vec()),
        ])
        .map_err(ck("searching the token"))?;
    match found.as_slice() {
        [h] => Ok(*h),
        [] => Err(KeyError::NotFound {
            key_id: key_id.to_string(),
            backend: format!("pkcs11 token {token:?} (label {label:?})"),
        }),
        many => Err(backend_err(format!(
            "{} objects labelled {label:?} with CKA_ID {key_id:?} in token {token:?}: refusing to guess which is the CA key",
            many.len()
        ))),
    }
}

/// A key manager over one PKCS#11 token.
pub struct Pkcs11KeyManager {
    recovery: Arc<Recovery>,
    session: Arc<Mutex<Session>>,
    token: String,
    prefix: String,
}

impl fmt::Debug for Pkcs11KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11KeyManager")
            .field("token", &self.token)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Pkcs11KeyManager {
    /// Loads the module, finds the token and logs in. Every failure names what was wrong: the
    /// module, the token (with the labels that exist), or the PIN.
    pub fn open(s: &Pkcs11Settings) -> Result<Self, KeyError> {
        let ctx = context(&s.module)?;
        let slots = ctx
            .get_slots_with_token()
            .map_err(ck("listing slots with a token"))?;
        let mut seen = Vec::new();
        let mut found: Option<(Slot, String)> = None;
        for slot in slots {
            let label = ctx
                .get_token_info(slot)
                .map(|i| i.label().trim().to_string())
                .unwrap_or_default();
            let hit = match (&s.token_label, s.slot) {
                (Some(want), _) => *want == label,
                (None, Some(id)) => slot.id() == id,
                (None, None) => false,
            };
            if hit {
                found = Some((slot, label.clone()));
                break;
            }
            seen.push(format!("{label:?} (slot {})", slot.id()));
        }
        let want = match (&s.token_label, s.slot) {
            (Some(l), _) => format!("token labelled {l:?}"),
            (None, Some(id)) => format!("slot {id}"),
            (None, None) => return Err(backend_err("set token_label or slot")),
        };
        let (slot, token) = found.ok_or_else(|| {
            backend_err(format!(
                "no {want} in PKCS#11 module {}; tokens present: {}",
                s.module.display(),
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            ))
        })?;
        let recovery = Arc::new(Recovery {
            ctx: ctx.clone(),
            slot,
            pin: s.pin.clone(),
            token: token.clone(),
        });
        let session = recovery.open_session()?;
        Ok(Self {
            recovery,
            session: Arc::new(Mutex::new(session)),
            token,
            prefix: s.key_label_prefix.clone(),
        })
    }

    fn label(&self, key_id: &str) -> String {
        format!("{}{key_id}", self.prefix)
    }

    /// Objects of `class` with this label and, when given, this CKA_ID.
    fn find(
        &self,
        session: &Session,
        class: ObjectClass,
        label: &str,
        id: Option<&str>,
    ) -> Result<Vec<ObjectHandle>, KeyError> {
        let mut template = vec![
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        if let Some(id) = id {
            template.push(Attribute::Id(id.as_bytes().to_vec()));
        }
        session
            .find_objects(&template)
            .map_err(ck("searching the token"))
    }

    /// The one object of `class` for `key_id` (label and CKA_ID both match).
    fn find_one(
        &self,
        session: &Session,
        class: ObjectClass,
        key_id: &str,
    ) -> Result<ObjectHandle, KeyError> {
        find_one_in(session, class, &self.label(key_id), key_id, &self.token)
    }

    fn key(&self, key_id: &str, handle: ObjectHandle, point: Vec<u8>) -> Arc<dyn SigningKey> {
        Arc::new(Pkcs11Key {
            key_id: key_id.to_string(),
            label: self.label(key_id),
            point,
            handle: Mutex::new(handle),
            session: self.session.clone(),
            recovery: self.recovery.clone(),
            storage: KeyStorage::Pkcs11 {
                token: self.token.clone(),
                label: self.label(key_id),
            },
        })
    }

    /// The token's label.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl KeyManager for Pkcs11KeyManager {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn persistent(&self) -> bool {
        true
    }

    fn generate(&self, key_id: &str) -> Result<Arc<dyn SigningKey>, KeyError> {
        crate::keys::check_key_id(key_id)?;
        let label = self.label(key_id);
        let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        // Any object already using the label (a stale public half included) would make the
        // key ambiguous later: refuse.
        if !self
            .find(&session, ObjectClass::PRIVATE_KEY, &label, None)?
            .is_empty()
            || !self
                .find(&session, ObjectClass::PUBLIC_KEY, &label, None)?
                .is_empty()
        {
            return Err(KeyError::AlreadyExists(key_id.to_string()));
        }
        let common = [
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(key_id.as_bytes().to_vec()),
        ];
        let mut public = vec![
            Attribute::KeyType(KeyType::EC),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Private(false),
        ];
        public.extend(common.iter().cloned());
        let mut private = vec![
            Attribute::KeyType(KeyType::EC),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ];
        private.extend(common.iter().cloned());
        let (pubh, privh) = session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(ck("generating an EC P-256 key pair in the token"))?;
        let point = session
            .get_attributes(pubh, &[AttributeType::EcPoint])
            .map_err(ck("reading the new public key"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .ok_or_else(|| backend_err("the token returned no CKA_EC_POINT"))
            .and_then(|p| ec_point(&p))?;
        drop(session);
        Ok(self.key(key_id, privh, point))
    }

    fn load(&self, key_id: &str) -> Result<Arc<dyn SigningKey>, KeyError> {
        crate::keys::check_key_id(key_id)?;
        let label = self.label(key_id);
        let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let privh = self.find_one(&session, ObjectClass::PRIVATE_KEY, key_id)?;
        let pubh = self.find_one(&session, ObjectClass::PUBLIC_KEY, key_id)?;
        let point = session
            .get_attributes(pubh, &[AttributeType::EcPoint])
            .map_err(ck("reading a public key"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .ok_or_else(|| backend_err(format!("public key {label:?} has no CKA_EC_POINT")))
            .and_then(|p| ec_point(&p))?;
        drop(session);
        Ok(self.key(key_id, privh, point))
    }

    fn delete(&self, key_id: &str) -> Result<(), KeyError> {
        crate::keys::check_key_id(key_id)?;
        let label = self.label(key_id);
        let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            for h in self.find(&session, class, &label, Some(key_id))? {
                session
                    .destroy_object(h)
                    .map_err(ck("destroying a key object"))?;
            }
        }
        Ok(())
    }
}

/// A private key inside the token.
struct Pkcs11Key {
    key_id: String,
    label: String,
    point: Vec<u8>,
    handle: Mutex<ObjectHandle>,
    session: Arc<Mutex<Session>>,
    recovery: Arc<Recovery>,
    storage: KeyStorage,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("key_id", &self.key_id)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl SigningKey for Pkcs11Key {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn public_point(&self) -> &[u8] {
        &self.point
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, msg);
        let sign_err = |e: CkError| KeyError::Sign {
            key_id: self.key_id.clone(),
            reason: format!("token: {e}"),
        };
        let raw = {
            let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            let mut handle = self.handle.lock().unwrap_or_else(|p| p.into_inner());
            match session.sign(&Mechanism::Ecdsa, *handle, digest.as_ref()) {
                Ok(raw) => raw,
                Err(e) if recoverable(&e) => {
                    // The token lost our session or login (reboot, failover): open a new one,
                    // find the key again, and retry once. Other keys share the new session.
                    tracing::warn!(key = %self.label, error = %e, "PKCS#11 session lost; reopening");
                    *session = self.recovery.open_session()?;
                    *handle = find_one_in(
                        &session,
                        ObjectClass::PRIVATE_KEY,
                        &self.label,
                        &self.key_id,
                        &self.recovery.token,
                    )?;
                    session
                        .sign(&Mechanism::Ecdsa, *handle, digest.as_ref())
                        .map_err(sign_err)?
                }
                Err(e) => return Err(sign_err(e)),
            }
        };
        raw_ecdsa_to_der(&raw).map_err(|e| KeyError::Sign {
            key_id: self.key_id.clone(),
            reason: e.to_string(),
        })
    }

    fn storage(&self) -> KeyStorage {
        self.storage.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_signatures_become_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[32] = 0x00;
        raw[33] = 0x01; // s has a leading zero to strip
        let der = raw_ecdsa_to_der(&raw).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00]);
        // s: 31 bytes after stripping one leading zero.
        let s_at = 2 + 2 + 33;
        assert_eq!(&der[s_at..s_at + 2], &[0x02, 31]);
        assert_eq!(der[1] as usize, der.len() - 2);
        assert!(raw_ecdsa_to_der(&[1, 2, 3]).is_err());
    }

    #[test]
    fn ec_point_accepts_wrapped_and_bare_points() {
        let mut bare = vec![0x04];
        bare.extend([7u8; 64]);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend(&bare);
        assert_eq!(ec_point(&wrapped).unwrap(), bare);
        assert_eq!(ec_point(&bare).unwrap(), bare);
        assert!(ec_point(&[0x04, 0x01, 0x00]).is_err());
    }

    /// Signing survives the token dropping our login (as after an HSM reboot or failover): a
    /// new session is opened and the key found again. Runs against a throwaway SoftHSM2 token;
    /// SoftHSM reads `SOFTHSM2_CONF` once, so the test re-runs itself in a child process with
    /// it set.
    #[test]
    fn signing_recovers_after_the_token_logs_us_out() {
        const NAME: &str = "pkcs11::tests::signing_recovers_after_the_token_logs_us_out";
        if std::env::var_os("TRUSTDECK_PKCS11_CHILD").is_none() {
            let dir = tempfile::tempdir().unwrap();
            let conf =
                trustdeck_lab::init_softhsm2_token(dir.path(), "recover", "so-pin", "user-pin")
                    .unwrap();
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--nocapture"])
                .env("SOFTHSM2_CONF", &conf)
                .env("TRUSTDECK_PKCS11_CHILD", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        let km = Pkcs11KeyManager::open(&Pkcs11Settings {
            module: trustdeck_lab::SOFTHSM2_MODULE.into(),
            token_label: Some("recover".into()),
            slot: None,
            key_label_prefix: "t-".into(),
            pin: AuthPin::from("user-pin"),
        })
        .unwrap();
        let key = km.generate("k1").unwrap();
        let verify = |sig: &[u8]| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                key.public_point(),
            )
            .verify(b"tbs", sig)
            .is_ok()
        };
        assert!(verify(&key.sign(b"tbs").unwrap()));
        // Another session of this application logs out: PKCS#11 logins are per application,
        // so our session is no longer logged in and the private key is out of reach.
        let h = {
            let session = km.session.lock().unwrap();
            km.find_one(&session, ObjectClass::PRIVATE_KEY, "k1")
                .unwrap()
        };
        let other = km.recovery.ctx.open_rw_session(km.recovery.slot).unwrap();
        other.logout().unwrap();
        {
            // The loss is real: the old session can no longer sign.
            let session = km.session.lock().unwrap();
            let e = session.sign(&Mechanism::Ecdsa, h, &[7u8; 32]).unwrap_err();
            assert!(recoverable(&e), "{e}");
        }
        assert!(verify(&key.sign(b"tbs").unwrap()), "signing recovered");
        // Another key of the same manager keeps working on the new session.
        let again = km.load("k1").unwrap();
        assert!(verify(&again.sign(b"tbs").unwrap()));
        km.delete("k1").unwrap();
    }

    #[test]
    fn missing_module_is_named() {
        let e = Pkcs11KeyManager::open(&Pkcs11Settings {
            module: "/nonexistent/libpkcs11.so".into(),
            token_label: Some("t".into()),
            slot: None,
            key_label_prefix: "td-".into(),
            pin: AuthPin::from("1234"),
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/nonexistent/libpkcs11.so") && e.contains("does not exist"),
            "{e}"
        );
    }
}
