//! The agent's TPM operations (tss-esapi 7.7, libtss2): read the EK certificate and public
//! area, create and reload the DevID key, sign with it, answer a credential challenge, and
//! make a PKCS#10 request signed by the TPM for a DevID CA.
//!
//! Every method opens its own handles and flushes them before returning: a TPM without a
//! resource manager (swtpm) has three transient object slots.
//!
//! The DevID private key never leaves the TPM: its `TPM2B_PRIVATE` is wrapped by the storage
//! primary key (re-derived from the owner seed on every load) and only usable inside that TPM.

use std::cell::RefCell;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;

use ring::digest::{SHA256, digest};
use tss_esapi::abstraction::AsymmetricAlgorithmSelection;
use tss_esapi::abstraction::ek;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, EccPoint, EccScheme, EncryptedSecret, HashScheme, HashcheckTicket, IdObject, Private,
    Public, PublicBuilder, PublicEccParametersBuilder, Signature, SignatureScheme,
    SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, TctiNameConf};

use crate::public::{PublicArea, tpm2b, tpm2b_contents};
use crate::verify::{challenge_message, der_prefix, ecdsa_der};

/// Why a TPM operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The TCTI could not be parsed or opened.
    #[error("cannot open the TPM at TCTI {tcti:?}: {reason}")]
    Open {
        /// The TCTI string.
        tcti: String,
        reason: String,
    },
    /// A TPM command failed.
    #[error("TPM {op} failed: {reason}")]
    Tpm {
        /// What was being done.
        op: &'static str,
        /// The TSS error.
        reason: String,
    },
    /// The TPM refused to load the DevID key: it was not made in this TPM under its current
    /// owner seed (the TPM was cleared or replaced, or the file belongs to another node).
    #[error(
        "TPM load of the DevID key failed: {reason}. It was not created in this TPM under its \
         current owner seed; if the TPM was cleared or replaced, the node needs a new DevID: \
         run `trustdeck-agent tpm provision --force`, have the DevID CA sign the new CSR, \
         evict the old node (`trustdeck-server agent evict`) and restart the agent"
    )]
    DevIdNotLoadable {
        /// The TSS error.
        reason: String,
    },
    /// The DevID key file is missing, unreadable or malformed.
    #[error("DevID key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    /// The TPM returned something unexpected.
    #[error("TPM returned unexpected data: {0}")]
    Unexpected(String),
    /// A DevID key blob does not parse.
    #[error("DevID key blob: {0}")]
    KeyBlob(#[from] KeyBlobError),
}

/// A DevID key file's bytes do not hold a key blob.
#[derive(Debug, thiserror::Error)]
pub enum KeyBlobError {
    /// A TPM2B structure's size runs past the end of the file.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Bytes follow the private blob.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// The public blob does not parse.
    #[error(transparent)]
    Public(#[from] crate::public::PublicError),
}

fn tpm_err(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> DeviceError {
    move |e| DeviceError::Tpm {
        op,
        reason: e.to_string(),
    }
}

/// The TCTI to use when none is configured: `$TPM2TOOLS_TCTI`, `$TCTI`, else the kernel
/// resource manager `device:/dev/tpmrm0`.
pub fn default_tcti() -> String {
    std::env::var("TPM2TOOLS_TCTI")
        .or_else(|_| std::env::var("TCTI"))
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "device:/dev/tpmrm0".into())
}

/// A DevID key as the TPM exported it: the public area and the private part wrapped by the
/// storage primary key (useless outside the TPM that created it).
#[derive(Clone, PartialEq, Eq)]
pub struct DevIdKey {
    /// Marshalled `TPM2B_PUBLIC`.
    pub public: Vec<u8>,
    /// Marshalled `TPM2B_PRIVATE` (wrapped; no key material in clear).
    pub private: Vec<u8>,
}

impl std::fmt::Debug for DevIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIdKey")
            .field("public_len", &self.public.len())
            .finish_non_exhaustive()
    }
}

impl DevIdKey {
    /// The file form: `TPM2B_PUBLIC || TPM2B_PRIVATE` (the concatenation of tpm2-tools'
    /// `.pub` and `.priv` files).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.public.clone();
        b.extend_from_slice(&self.private);
        b
    }

    /// Parses the file form.
    pub fn from_bytes(b: &[u8]) -> Result<DevIdKey, KeyBlobError> {
        let split = |b: &[u8]| -> Option<usize> {
            let (n, _) = b.split_first_chunk::<2>()?;
            let end = 2 + u16::from_be_bytes(*n) as usize;
            (end <= b.len()).then_some(end)
        };
        let pub_end = split(b).ok_or(KeyBlobError::Truncated("TPM2B_PUBLIC"))?;
        let rest = &b[pub_end..];
        let priv_end = split(rest).ok_or(KeyBlobError::Truncated("TPM2B_PRIVATE"))?;
        if priv_end != rest.len() {
            return Err(KeyBlobError::Trailing(rest.len() - priv_end));
        }
        let key = DevIdKey {
            public: b[..pub_end].to_vec(),
            private: rest.to_vec(),
        };
        key.area()?;
        Ok(key)
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<DevIdKey, DeviceError> {
        let err = |reason: String| DeviceError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let b = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        DevIdKey::from_bytes(&b).map_err(|e| err(e.to_string()))
    }

    /// Writes a key file (mode 0600, by temporary file and rename).
    pub fn write(&self, path: &Path) -> Result<(), DeviceError> {
        let err = |reason: String| DeviceError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(e.to_string()))?;
        f.write_all(&self.to_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// The parsed public area.
    pub fn area(&self) -> Result<PublicArea, KeyBlobError> {
        Ok(PublicArea::from_tpm2b(&self.public)?)
    }

    fn tss(&self) -> Result<(Public, Private), DeviceError> {
        let bad = |e: tss_esapi::Error| DeviceError::Unexpected(format!("DevID key blob: {e}"));
        let public_tpmt = tpm2b_contents(&self.public)
            .ok_or_else(|| DeviceError::Unexpected("DevID TPM2B_PUBLIC size".into()))?;
        let private = tpm2b_contents(&self.private)
            .ok_or_else(|| DeviceError::Unexpected("DevID TPM2B_PRIVATE size".into()))?;
        Ok((
            Public::unmarshall(public_tpmt).map_err(bad)?,
            Private::try_from(private.to_vec()).map_err(bad)?,
        ))
    }
}

/// The storage primary key template: ECC P-256, restricted decryption, AES-128-CFB. Primary
/// keys are derived from the owner seed, so the same template yields the same key every time.
fn storage_template() -> Result<Public, tss_esapi::Error> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// The DevID key template: ECC P-256 ECDSA-SHA-256, unrestricted signing, fixedTPM,
/// fixedParent, sensitiveDataOrigin.
fn devid_template() -> Result<Public, tss_esapi::Error> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_unrestricted_signing_key(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// An open TPM.
pub struct Tpm {
    ctx: Context,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tpm")
    }
}

impl Tpm {
    /// Opens the TPM at `tcti` (for example `swtpm:host=127.0.0.1,port=2321` or
    /// `device:/dev/tpmrm0`).
    pub fn open(tcti: &str) -> Result<Tpm, DeviceError> {
        let open_err = |e: tss_esapi::Error| DeviceError::Open {
            tcti: tcti.to_string(),
            reason: e.to_string(),
        };
        let conf = TctiNameConf::from_str(tcti).map_err(open_err)?;
        let ctx = Context::new(conf).map_err(open_err)?;
        Ok(Tpm { ctx })
    }

    /// The RSA-2048 EK certificate (DER) from NV index 0x01c00002.
    pub fn ek_certificate(&mut self) -> Result<Vec<u8>, DeviceError> {
        let raw = ek::retrieve_ek_pubcert(
            &mut self.ctx,
            AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        )
        .map_err(tpm_err("read of the EK certificate (NV 0x01c00002)"))?;
        der_prefix(&raw).map(<[u8]>::to_vec).ok_or_else(|| {
            DeviceError::Unexpected("NV 0x01c00002 does not hold a DER certificate".into())
        })
    }

    fn create_ek(&mut self) -> Result<KeyHandle, DeviceError> {
        ek::create_ek_object_2(
            &mut self.ctx,
            AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            None,
        )
        .map_err(tpm_err("creation of the RSA-2048 EK"))
    }

    fn flush(&mut self, h: impl Into<ObjectHandle>) {
        let _ = self.ctx.flush_context(h.into());
    }

    /// The RSA-2048 EK's marshalled `TPM2B_PUBLIC` (from the default EK template).
    pub fn ek_public(&mut self) -> Result<Vec<u8>, DeviceError> {
        let h = self.create_ek()?;
        let r = self.ctx.read_public(h);
        self.flush(h);
        let (public, _, _) = r.map_err(tpm_err("read of the EK public area"))?;
        marshal_public(public)
    }

    fn storage_primary(&mut self) -> Result<KeyHandle, DeviceError> {
        let template = storage_template().map_err(tpm_err("storage key template"))?;
        Ok(self
            .ctx
            .execute_with_nullauth_session(|ctx| {
                ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(tpm_err("creation of the storage primary key"))?
            .key_handle)
    }

    /// Creates a new DevID key in the TPM under the storage primary key.
    pub fn create_devid(&mut self) -> Result<DevIdKey, DeviceError> {
        let primary = self.storage_primary()?;
        let template = devid_template().map_err(tpm_err("DevID key template"));
        let r = template.and_then(|t| {
            self.ctx
                .execute_with_nullauth_session(|ctx| ctx.create(primary, t, None, None, None, None))
                .map_err(tpm_err("creation of the DevID key"))
        });
        self.flush(primary);
        let created = r?;
        Ok(DevIdKey {
            public: marshal_public(created.out_public)?,
            private: tpm2b(created.out_private.value())
                .ok_or_else(|| DeviceError::Unexpected("TPM2B_PRIVATE too long".into()))?,
        })
    }

    /// Loads the DevID key (the primary is flushed at once); the caller flushes the handle.
    fn load(&mut self, key: &DevIdKey) -> Result<KeyHandle, DeviceError> {
        let (public, private) = key.tss()?;
        let primary = self.storage_primary()?;
        let r = self
            .ctx
            .execute_with_nullauth_session(|ctx| ctx.load(primary, private, public))
            .map_err(|e| match e {
                // The blob's integrity does not check out under this TPM's storage seed.
                tss_esapi::Error::Tss2Error(rc)
                    if rc.kind()
                        == Some(
                            tss_esapi::constants::response_code::Tss2ResponseCodeKind::Integrity,
                        ) =>
                {
                    DeviceError::DevIdNotLoadable {
                        reason: e.to_string(),
                    }
                }
                e => tpm_err("load of the DevID key")(e),
            });
        self.flush(primary);
        r
    }

    fn sign_loaded(&mut self, h: KeyHandle, message: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let d = Digest::try_from(digest(&SHA256, message).as_ref().to_vec())
            .map_err(tpm_err("digest"))?;
        let validation = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .map_err(tpm_err("hashcheck ticket"))?;
        let sig = self
            .ctx
            .execute_with_nullauth_session(|ctx| ctx.sign(h, d, SignatureScheme::Null, validation))
            .map_err(tpm_err("signature with the DevID key"))?;
        match sig {
            Signature::EcDsa(s) => Ok(ecdsa_der(s.signature_r().value(), s.signature_s().value())),
            other => Err(DeviceError::Unexpected(format!(
                "expected an ECDSA signature, got {:?}",
                other.algorithm()
            ))),
        }
    }

    /// Signs SHA-256(`message`) with the DevID key; returns a DER ECDSA signature.
    pub fn sign(&mut self, key: &DevIdKey, message: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let h = self.load(key)?;
        let r = self.sign_loaded(h, message);
        self.flush(h);
        r
    }

    fn activate_loaded(
        &mut self,
        devid: KeyHandle,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, DeviceError> {
        let blob = tpm2b_contents(id_object)
            .ok_or_else(|| DeviceError::Unexpected("credential blob: bad TPM2B size".into()))
            .and_then(|b| IdObject::try_from(b.to_vec()).map_err(tpm_err("credential blob")))?;
        let secret = tpm2b_contents(encrypted_secret)
            .ok_or_else(|| DeviceError::Unexpected("encrypted secret: bad TPM2B size".into()))
            .and_then(|b| {
                EncryptedSecret::try_from(b.to_vec()).map_err(tpm_err("encrypted secret"))
            })?;
        let ek = self.create_ek()?;
        let session = match self.ctx.start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        ) {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.flush(ek);
                return Err(DeviceError::Unexpected("no policy session".into()));
            }
            Err(e) => {
                self.flush(ek);
                return Err(tpm_err("start of the EK policy session")(e));
            }
        };
        let r = (|| {
            let policy = PolicySession::try_from(session).map_err(tpm_err("policy session"))?;
            self.ctx
                .execute_with_nullauth_session(|ctx| {
                    ctx.policy_secret(
                        policy,
                        tss_esapi::handles::AuthHandle::Endorsement,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                        None,
                    )
                })
                .map_err(tpm_err("PolicySecret(endorsement)"))?;
            self.ctx
                .execute_with_sessions(
                    (Some(AuthSession::Password), Some(session), None),
                    |ctx| ctx.activate_credential(devid, ek, blob, secret),
                )
                .map_err(tpm_err(
                    "ActivateCredential (the credential was not made for this TPM's EK and DevID key)",
                ))
        })();
        self.flush(ek);
        self.flush(SessionHandle::from(session));
        Ok(r?.value().to_vec())
    }

    /// Releases the secret of a credential made for this TPM's EK and the DevID key's name
    /// (`TPM2_ActivateCredential`).
    pub fn activate_credential(
        &mut self,
        key: &DevIdKey,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, DeviceError> {
        let h = self.load(key)?;
        let r = self.activate_loaded(h, id_object, encrypted_secret);
        self.flush(h);
        r
    }

    /// Answers a `tpm_devid` challenge: the DevID signature over the nonce's challenge
    /// message, and the activated credential secret.
    pub fn answer_challenge(
        &mut self,
        key: &DevIdKey,
        nonce: &[u8],
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), DeviceError> {
        let h = self.load(key)?;
        let r = self
            .sign_loaded(h, &challenge_message(nonce))
            .and_then(|sig| Ok((sig, self.activate_loaded(h, id_object, encrypted_secret)?)));
        self.flush(h);
        r
    }

    /// A PKCS#10 request (DER) with subject CN `cn` for the DevID key, signed by the TPM.
    pub fn csr(&mut self, key: &DevIdKey, cn: &str) -> Result<Vec<u8>, DeviceError> {
        let area = key.area()?;
        let crate::public::PublicKey::Ecc { x, y, .. } = area.key else {
            return Err(DeviceError::Unexpected(
                "DevID key is not an ECC key".into(),
            ));
        };
        let mut point = vec![0x04];
        for c in [&x, &y] {
            point.extend(std::iter::repeat_n(0u8, 32usize.saturating_sub(c.len())));
            point.extend_from_slice(c);
        }
        let h = self.load(key)?;
        let signer = TpmSigner {
            tpm: RefCell::new(self),
            handle: h,
            point,
            error: RefCell::new(None),
        };
        let r = (|| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
                .map_err(|e| DeviceError::Unexpected(e.to_string()))?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            params
                .serialize_request(&signer)
                .map(|c| c.der().to_vec())
                .map_err(|e| match signer.error.borrow_mut().take() {
                    Some(d) => d,
                    None => DeviceError::Unexpected(format!("CSR: {e}")),
                })
        })();
        signer.tpm.into_inner().flush(h);
        r
    }
}

fn marshal_public(public: Public) -> Result<Vec<u8>, DeviceError> {
    let tpmt = public
        .marshall()
        .map_err(tpm_err("marshalling a public area"))?;
    tpm2b(&tpmt).ok_or_else(|| DeviceError::Unexpected("public area too long".into()))
}

/// rcgen signing through the TPM (the CSR's signature).
struct TpmSigner<'a> {
    tpm: RefCell<&'a mut Tpm>,
    handle: KeyHandle,
    point: Vec<u8>,
    error: RefCell<Option<DeviceError>>,
}

impl rcgen::PublicKeyData for TpmSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for TpmSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.tpm
            .borrow_mut()
            .sign_loaded(self.handle, msg)
            .map_err(|e| {
                *self.error.borrow_mut() = Some(e);
                rcgen::Error::RemoteKeyError
            })
    }
}
