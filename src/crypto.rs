//! End-to-end encryption of credential files (OpenCode's `auth.json`: API keys, OAuth tokens)
//! before they reach any sync remote.
//!
//! A [`Sealer`] turns plaintext into a self-describing, versioned JSON *envelope* and back:
//!
//! ```text
//! {"oc-sync-envelope":1,"alg":"AES-256-GCM","kdf":"PBKDF2-HMAC-SHA256","iterations":600000,
//!  "salt":"<base64 of 16 random bytes>","nonce":"<base64 of 12 random bytes>",
//!  "ciphertext":"<base64 of AES-256-GCM ciphertext || 16-byte tag>"}
//! ```
//!
//! * key = PBKDF2-HMAC-SHA256(passphrase as UTF-8, salt, iterations), 32 bytes;
//! * AES-256-GCM with the envelope's nonce; the associated data is exactly the caller's `aad`
//!   (it is not stored in the envelope: the caller passes the same bytes, e.g. the item key and
//!   its version, when opening);
//! * base64 is the standard alphabet with padding.
//!
//! Key derivation is slow by design (600 000 iterations by default), so derived keys are cached
//! process-wide per (passphrase, salt, iterations). Each `Sealer` picks one random salt (on its
//! first seal) and seals everything with it, so a machine derives its sealing key once per
//! process and every other machine's key once per process. Derivation is synchronous CPU work:
//! call [`Sealer::seal`] / [`Sealer::open`] from blocking code (or `spawn_blocking`), never on
//! an async runtime thread.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// PBKDF2 iterations used for new envelopes unless [`Sealer::with_iterations`] says otherwise.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// Fewest characters (Unicode scalar values) a passphrase may have.
pub const MIN_PASSPHRASE_CHARS: usize = 16;
/// Fewest PBKDF2 iterations an envelope may declare (low only so tests stay fast).
pub const MIN_ITERATIONS: u32 = 1_000;
/// Most PBKDF2 iterations an envelope may declare: a bigger count would let a hostile remote
/// make every open burn CPU for a long time.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// The envelope format version written by this build.
pub const ENVELOPE_VERSION: u32 = 1;

const VERSION_FIELD: &str = "oc-sync-envelope";
const ALG: &str = "AES-256-GCM";
const KDF: &str = "PBKDF2-HMAC-SHA256";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Distinct (passphrase, salt, iterations) keys kept before the cache is emptied; one entry per
/// machine is expected, this only bounds what a hostile remote full of salts could make us keep.
const CACHE_CAPACITY: usize = 64;

/// The message of [`CryptoError::WrongPassphrase`].
pub const WRONG_PASSPHRASE_MESSAGE: &str = "the passphrase on this machine does not match the one that encrypted the remote credentials: \
set the same OC_SYNC_PASSPHRASE (or encryptionKey) as on your other machines; \
while changing the passphrase, set oldEncryptionKey to the previous one";

/// Why sealing or opening failed. Messages never contain key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the passphrase must have at least 16 characters; choose a longer one (several random words work well) \
         and set it in OC_SYNC_PASSPHRASE or encryptionKey"
    )]
    PassphraseTooShort,
    /// The envelope is well-formed but no configured passphrase opens it. AES-GCM cannot tell a
    /// wrong key from tampered ciphertext, nonce or salt, or from a wrong `aad`: all land here.
    #[error("{}", WRONG_PASSPHRASE_MESSAGE)]
    WrongPassphrase,
    /// Not an envelope, or one this build cannot or will not open.
    #[error("the encrypted credentials are not a valid oc-sync envelope: {0}")]
    Malformed(String),
    /// Sealing itself failed (the operating system's random source failed, or the plaintext is
    /// beyond AES-GCM's size limit). Not expected in practice.
    #[error("could not encrypt the credentials: {0}")]
    SealFailed(String),
}

/// A passphrase of at least [`MIN_PASSPHRASE_CHARS`] characters. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(String);

impl Passphrase {
    /// Accepts `s` as is (no trimming) if it has at least [`MIN_PASSPHRASE_CHARS`] characters.
    pub fn new(s: &str) -> Result<Self, CryptoError> {
        if s.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(CryptoError::PassphraseTooShort);
        }
        Ok(Passphrase(s.to_owned()))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(****)")
    }
}

/// The result of [`Sealer::open`].
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// The old passphrase (not the current one) opened it: the caller should re-seal.
    pub with_old_key: bool,
    /// The envelope's PBKDF2 iteration count (re-seal if it is below the current setting).
    pub iterations: u32,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field(
                "plaintext",
                &format_args!("<{} bytes>", self.plaintext.len()),
            )
            .field("with_old_key", &self.with_old_key)
            .field("iterations", &self.iterations)
            .finish()
    }
}

/// Seals and opens credential items. Keys are derived once per (passphrase, salt, iterations)
/// and cached process-wide (derivation is slow by design); this machine seals everything with
/// one random salt chosen per `Sealer` (on its first seal).
pub struct Sealer {
    current: Passphrase,
    old: Option<Passphrase>,
    iterations: u32,
    salt: OnceLock<[u8; SALT_LEN]>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current)
            .field("old", &self.old)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    #[serde(rename = "oc-sync-envelope")]
    version: u32,
    alg: &'a str,
    kdf: &'a str,
    iterations: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

struct Envelope {
    iterations: u32,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl Sealer {
    /// A sealer with [`DEFAULT_ITERATIONS`]. `old` is the previous passphrase during a change.
    pub fn new(current: Passphrase, old: Option<Passphrase>) -> Self {
        Sealer {
            current,
            old,
            iterations: DEFAULT_ITERATIONS,
            salt: OnceLock::new(),
        }
    }

    /// Iterations for new envelopes, clamped to [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`]
    /// (anything else could not be opened). Meant for tests.
    pub fn with_iterations(mut self, n: u32) -> Self {
        self.iterations = n.clamp(MIN_ITERATIONS, MAX_ITERATIONS);
        self
    }

    /// The iteration count new envelopes get.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Encrypts `plaintext` with the current passphrase into an envelope (UTF-8 JSON).
    /// `aad` binds the item (e.g. its key and version): opening with other `aad` fails.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let salt = self.salt()?;
        let key = cached_key(&self.current, &salt, self.iterations);
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| CryptoError::SealFailed(format!("no random nonce: {e}")))?;
        let cipher = Aes256Gcm::new(&key.into());
        let ciphertext = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::SealFailed("the plaintext is too large".into()))?;
        let out = EnvelopeOut {
            version: ENVELOPE_VERSION,
            alg: ALG,
            kdf: KDF,
            iterations: self.iterations,
            salt: B64.encode(salt),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        };
        serde_json::to_vec(&out).map_err(|e| CryptoError::SealFailed(e.to_string()))
    }

    /// Decrypts an envelope, trying the current passphrase, then the old one.
    pub fn open(&self, envelope: &[u8], aad: &[u8]) -> Result<Opened, CryptoError> {
        let env = parse(envelope)?;
        let candidates =
            std::iter::once((&self.current, false)).chain(self.old.iter().map(|p| (p, true)));
        for (pass, with_old_key) in candidates {
            let key = cached_key(pass, &env.salt, env.iterations);
            let cipher = Aes256Gcm::new(&key.into());
            if let Ok(plaintext) = cipher.decrypt(
                &env.nonce.into(),
                Payload {
                    msg: &env.ciphertext,
                    aad,
                },
            ) {
                return Ok(Opened {
                    plaintext,
                    with_old_key,
                    iterations: env.iterations,
                });
            }
        }
        Err(CryptoError::WrongPassphrase)
    }

    /// Whether `bytes` claim to be an envelope (a JSON object with an `"oc-sync-envelope"`
    /// field, of any version): such bytes must be opened, never treated as plaintext.
    /// It does not validate the rest; [`Sealer::open`] does.
    pub fn is_envelope(bytes: &[u8]) -> bool {
        matches!(
            serde_json::from_slice::<serde_json::Value>(bytes),
            Ok(serde_json::Value::Object(map)) if map.contains_key(VERSION_FIELD)
        )
    }

    fn salt(&self) -> Result<[u8; SALT_LEN], CryptoError> {
        if let Some(salt) = self.salt.get() {
            return Ok(*salt);
        }
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt)
            .map_err(|e| CryptoError::SealFailed(format!("no random salt: {e}")))?;
        // If another thread won the race, use its salt.
        Ok(*self.salt.get_or_init(|| salt))
    }
}

/// One fresh PBKDF2 derivation with `iterations` (random salt, no cache), timed.
pub fn derivation_time(iterations: u32) -> Duration {
    let mut salt = [0u8; SALT_LEN];
    // A benchmark: a failed random source just means an all-zero salt.
    let _ = getrandom::fill(&mut salt);
    let start = Instant::now();
    let key = derive_key(
        b"oc-sync derivation benchmark passphrase",
        &salt,
        iterations,
    );
    let elapsed = start.elapsed();
    std::hint::black_box(key);
    elapsed
}

fn malformed(msg: impl Into<String>) -> CryptoError {
    CryptoError::Malformed(msg.into())
}

/// A value from the envelope, shortened so a hostile one cannot flood an error message.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

fn parse(bytes: &[u8]) -> Result<Envelope, CryptoError> {
    let map = envelope_object(bytes)?;
    check_algorithms(&map)?;
    let iterations = iterations_of(&map)?;
    let decode = |name: &str| -> Result<Vec<u8>, CryptoError> {
        B64.decode(text_field(&map, name)?)
            .map_err(|_| malformed(format!("field \"{name}\" is not valid base64")))
    };
    let salt: [u8; SALT_LEN] = decode("salt")?.try_into().map_err(|v: Vec<u8>| {
        malformed(format!(
            "the salt has {} bytes (expected {SALT_LEN})",
            v.len()
        ))
    })?;
    let nonce: [u8; NONCE_LEN] = decode("nonce")?.try_into().map_err(|v: Vec<u8>| {
        malformed(format!(
            "the nonce has {} bytes (expected {NONCE_LEN})",
            v.len()
        ))
    })?;
    let ciphertext = decode("ciphertext")?;
    if ciphertext.len() < TAG_LEN {
        return Err(malformed(format!(
            "the ciphertext has {} bytes, shorter than the {TAG_LEN}-byte tag (truncated?)",
            ciphertext.len()
        )));
    }
    Ok(Envelope {
        iterations,
        salt,
        nonce,
        ciphertext,
    })
}

/// The envelope's JSON object, after checking it is one of a version this oc-sync reads.
fn envelope_object(bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, CryptoError> {
    use serde_json::Value;
    // serde_json's syntax errors give only a category and a position, never the input.
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("not an oc-sync envelope (not valid JSON: {e})")))?;
    let Value::Object(map) = value else {
        return Err(malformed("not an oc-sync envelope (not a JSON object)"));
    };
    let Some(version) = map.get(VERSION_FIELD) else {
        return Err(malformed(format!(
            "not an oc-sync envelope (no \"{VERSION_FIELD}\" field)"
        )));
    };
    match version.as_u64() {
        Some(1) => {}
        Some(v) => {
            return Err(malformed(format!(
                "envelope version {v} is not supported by this oc-sync (it reads version {ENVELOPE_VERSION}); \
                 upgrade oc-sync on this machine"
            )));
        }
        None => {
            return Err(malformed(format!(
                "the \"{VERSION_FIELD}\" field is not a version number"
            )));
        }
    }
    Ok(map)
}

/// A string field of the envelope.
fn text_field<'m>(map: &'m serde_json::Map<String, serde_json::Value>, name: &str) -> Result<&'m str, CryptoError> {
    match map.get(name) {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(malformed(format!("field \"{name}\" is not a string"))),
        None => Err(malformed(format!("field \"{name}\" is missing"))),
    }
}

/// The cipher and key derivation must be the ones this oc-sync uses.
fn check_algorithms(map: &serde_json::Map<String, serde_json::Value>) -> Result<(), CryptoError> {
    let alg = text_field(map, "alg")?;
    if alg != ALG {
        return Err(malformed(format!(
            "unsupported cipher {} (expected {ALG})",
            shown(alg)
        )));
    }
    let kdf = text_field(map, "kdf")?;
    if kdf != KDF {
        return Err(malformed(format!(
            "unsupported key derivation {} (expected {KDF})",
            shown(kdf)
        )));
    }
    Ok(())
}

/// The key derivation's iteration count, within the accepted range.
fn iterations_of(map: &serde_json::Map<String, serde_json::Value>) -> Result<u32, CryptoError> {
    let iterations = match map.get("iterations") {
        None => return Err(malformed("field \"iterations\" is missing")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| malformed("field \"iterations\" is not a whole non-negative number"))?,
    };
    if !(u64::from(MIN_ITERATIONS)..=u64::from(MAX_ITERATIONS)).contains(&iterations) {
        return Err(malformed(format!(
            "iteration count {iterations} is outside the accepted range {MIN_ITERATIONS}..={MAX_ITERATIONS}"
        )));
    }
    Ok(iterations as u32) // in range, checked above
}

fn derive_key(pass: &[u8], salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    #[cfg(test)]
    tests::count_derivation();
    pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_LEN>(pass, salt, iterations)
}

/// (SHA-256 of the passphrase, salt, iterations): the passphrase itself is not kept as a key.
type CacheKey = ([u8; 32], [u8; SALT_LEN], u32);
type KeyCell = Arc<OnceLock<[u8; KEY_LEN]>>;

static KEY_CACHE: LazyLock<Mutex<HashMap<CacheKey, KeyCell>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The derived key, from the process-wide cache or freshly derived (once: concurrent callers
/// for the same key wait for the first derivation instead of repeating it).
fn cached_key(pass: &Passphrase, salt: &[u8; SALT_LEN], iterations: u32) -> [u8; KEY_LEN] {
    let id: CacheKey = (Sha256::digest(pass.bytes()).into(), *salt, iterations);
    let cell = {
        let mut cache = KEY_CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= CACHE_CAPACITY && !cache.contains_key(&id) {
            cache.clear();
        }
        Arc::clone(cache.entry(id).or_default())
    };
    // Derive outside the map lock so other keys are not held up.
    *cell.get_or_init(|| derive_key(pass.bytes(), salt, iterations))
}

#[cfg(test)]
mod tests;
