//! Codecs: what turns an item's plaintext into what the remote stores and back. Credentials are
//! sealed whole with the passphrase (AES-256-GCM, key from PBKDF2); config files have their secret
//! values sealed field by field (or held back without a passphrase). Everything else passes as is.

use std::sync::Arc;

use crate::clock::VectorClock;
use crate::config::{Config, Secret};
use crate::crypto::{CryptoError, Passphrase, Sealer, MIN_ITERATIONS};
use crate::merge;
use crate::paths::EnvSnapshot;
use crate::secrets::detect::Detector;
use crate::secrets::ConfigSecrets;

use super::error::SyncError;
use super::sources::credentials_off_reason;

/// Encrypts the items it applies to before they reach the remote, and decrypts what comes back.
/// The item key and its vector clock are bound in (associated data), so a ciphertext cannot be moved
/// onto another item or replayed as another version.
pub trait Codec: Sync {
    fn applies_to(&self, key: &str) -> bool;
    /// `previous`: the remote's current content of the item, when [`Codec::wants_previous`] asked.
    fn seal(&self, key: &str, clock: &VectorClock, plaintext: &[u8], previous: Option<&[u8]>) -> Result<Vec<u8>, SyncError>;
    /// `local`: this machine's current content of the item, if it has one.
    fn open(&self, key: &str, clock: &VectorClock, sealed: &[u8], local: Option<&[u8]>) -> Result<Vec<u8>, SyncError>;
    /// Whether sealing this plaintext needs the remote's current content (e.g. to reuse ciphertexts).
    fn wants_previous(&self, _key: &str, _plaintext: &[u8]) -> bool {
        false
    }
    /// Whether a passphrase change means sending this item again (`oc-sync rekey`).
    fn reseals(&self, _key: &str, _plaintext: &[u8]) -> bool {
        true
    }
    /// Hides secret values in the description of a merge conflict between `sides` (local, remote).
    fn redact(&self, _key: &str, _sides: [&[u8]; 2], _conflict: &mut merge::Conflict) {}
}

/// The associated data that binds a sealed item to its key and version.
pub fn item_aad(key: &str, clock: &VectorClock) -> Vec<u8> {
    let mut aad = format!("oc-sync item\n{key}\n").into_bytes();
    aad.extend(serde_json::to_vec(clock).expect("clock serialises"));
    aad
}

/// The sealer of this configuration's passphrase (None without one).
pub fn passphrase_sealer(config: &Config, env: &EnvSnapshot) -> Result<Option<Arc<Sealer>>, SyncError> {
    let Some(key) = config.encryption_key.as_ref() else { return Ok(None) };
    let pass = |s: &Secret| Passphrase::new(s.expose()).map_err(|e| SyncError::Crypto(e.to_string()));
    let current = pass(key)?;
    let old = config.old_encryption_key.as_ref().map(pass).transpose()?;
    let mut sealer = Sealer::new(current, old);
    // Test knob: a lower PBKDF2 count (the envelope records the count used, so any machine opens it).
    if let Some(n) = env.var("OC_SYNC_KDF_ITERATIONS").and_then(|v| v.parse::<u32>().ok()) {
        sealer = sealer.with_iterations(n.max(MIN_ITERATIONS));
    }
    Ok(Some(Arc::new(sealer)))
}

/// Seals credential items with the passphrase (AES-256-GCM, key from PBKDF2).
pub struct CredentialCodec {
    sealer: Arc<Sealer>,
}

impl Codec for CredentialCodec {
    fn applies_to(&self, key: &str) -> bool {
        key.starts_with("credentials/")
    }
    fn seal(&self, key: &str, clock: &VectorClock, plaintext: &[u8], _previous: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        self.sealer.seal(plaintext, &item_aad(key, clock)).map_err(|e| SyncError::Crypto(format!("cannot encrypt {key}: {e}")))
    }
    fn open(&self, key: &str, clock: &VectorClock, sealed: &[u8], _local: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        self.sealer
            .open(sealed, &item_aad(key, clock))
            .map(|o| o.plaintext)
            .map_err(|e| match e {
                CryptoError::WrongPassphrase => {
                    SyncError::Crypto(format!("{key}: {e} (or the remote copy of {key} was altered; nothing was written)"))
                }
                e => SyncError::Crypto(format!("{key}: {e}")),
            })
    }
}

/// The field-level codec of config items: secret values sealed with the passphrase, or held back.
pub fn config_secrets(config: &Config, sealer: Option<Arc<Sealer>>) -> ConfigSecrets {
    ConfigSecrets::new(Detector::new(&config.secret_paths, &config.not_secret_paths), sealer)
}

impl Codec for ConfigSecrets {
    fn applies_to(&self, key: &str) -> bool {
        ConfigSecrets::applies_to(key)
    }
    fn seal(&self, key: &str, _clock: &VectorClock, plaintext: &[u8], previous: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        ConfigSecrets::seal(self, key, plaintext, previous).map_err(|e| SyncError::Crypto(e.to_string()))
    }
    fn open(&self, key: &str, _clock: &VectorClock, sealed: &[u8], local: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        ConfigSecrets::open(self, key, sealed, local).map_err(|e| SyncError::Crypto(e.to_string()))
    }
    fn wants_previous(&self, key: &str, plaintext: &[u8]) -> bool {
        self.find(key, plaintext).is_ok_and(|f| !f.is_empty())
    }
    fn reseals(&self, key: &str, plaintext: &[u8]) -> bool {
        self.wants_previous(key, plaintext)
    }
    fn redact(&self, key: &str, sides: [&[u8]; 2], conflict: &mut merge::Conflict) {
        ConfigSecrets::redact(self, key, sides, conflict)
    }
}

/// Every codec of a sync: each item goes through the first that applies to it.
pub struct Codecs(Vec<Box<dyn Codec>>);

impl Codecs {
    /// Credentials (whole items, when they sync) and config secrets (field by field).
    pub fn for_config(config: &Config, env: &EnvSnapshot) -> Result<Codecs, SyncError> {
        let sealer = passphrase_sealer(config, env)?;
        let mut all: Vec<Box<dyn Codec>> = Vec::new();
        if credentials_off_reason(config).is_none()
            && let Some(s) = &sealer
        {
            all.push(Box::new(CredentialCodec { sealer: s.clone() }));
        }
        if config.sync.config {
            all.push(Box::new(config_secrets(config, sealer)));
        }
        Ok(Codecs(all))
    }

    fn get(&self, key: &str) -> Option<&dyn Codec> {
        self.0.iter().find(|c| c.applies_to(key)).map(|c| c.as_ref())
    }
}

impl Codec for Codecs {
    fn applies_to(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    fn seal(&self, key: &str, clock: &VectorClock, plaintext: &[u8], previous: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        match self.get(key) {
            Some(c) => c.seal(key, clock, plaintext, previous),
            None => Ok(plaintext.to_vec()),
        }
    }
    fn open(&self, key: &str, clock: &VectorClock, sealed: &[u8], local: Option<&[u8]>) -> Result<Vec<u8>, SyncError> {
        match self.get(key) {
            Some(c) => c.open(key, clock, sealed, local),
            None => Ok(sealed.to_vec()),
        }
    }
    fn wants_previous(&self, key: &str, plaintext: &[u8]) -> bool {
        self.get(key).is_some_and(|c| c.wants_previous(key, plaintext))
    }
    fn reseals(&self, key: &str, plaintext: &[u8]) -> bool {
        self.get(key).is_some_and(|c| c.reseals(key, plaintext))
    }
    fn redact(&self, key: &str, sides: [&[u8]; 2], conflict: &mut merge::Conflict) {
        if let Some(c) = self.get(key) {
            c.redact(key, sides, conflict)
        }
    }
}
