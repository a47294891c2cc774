//! Secrets inside config files (API keys, tokens, passwords in opencode.json, MCP server settings,
//! agent front matter): found by [`detect`], kept off the remote field by field.
//!
//! On the remote each secret value is replaced in place, the rest of the file untouched:
//!
//! - with a passphrase: `oc-sync:sealed:<base64 of an oc-sync envelope>` (the credentials'
//!   AES-256-GCM + PBKDF2 envelope, [`crate::crypto`]), the associated data binding it to the item
//!   key and the value's JSON pointer; an unchanged value keeps its previous ciphertext, so a push
//!   changes only the values that changed;
//! - without one: [`HELD_BACK`]; the value stays on this machine. A value the remote holds that
//!   this machine cannot read (a marker, or a sealed value without a passphrase) is carried as it
//!   is when this machine has its own value there, so pushes never replace it.
//!
//! On the way in, sealed values are opened, and a placeholder never replaces a value this machine
//! holds: the local value is kept (a machine without the passphrase keeps its own values). Merges
//! and the local base see plaintext only.

pub mod detect;
pub mod doc;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::crypto::{CryptoError, Sealer};
use detect::{Detector, Rule, is_placeholder};
use doc::{Scalar, Syntax, dotted, pointer};

/// The start of a sealed value on the remote.
pub const SEALED_PREFIX: &str = "oc-sync:sealed:";
/// What the remote holds instead of a secret that a machine without a passphrase kept back.
pub const HELD_BACK: &str = "oc-sync:held-back";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A config file that cannot be read as its syntax and seems to hold a secret: not pushed.
    #[error(
        "{key} is not valid JSON/JSONC ({message}) and seems to hold a secret, so it is not uploaded; fix the file (or exclude it)"
    )]
    Unreadable { key: String, message: String },
    #[error("{key}: the secret at {path}: {source}")]
    Crypto {
        key: String,
        path: String,
        #[source]
        source: CryptoError,
    },
    #[error("{key}: the secret at {path} could not be hidden; nothing was uploaded")]
    NotHidden { key: String, path: String },
}

/// One secret value found in a config item (its path, never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: Vec<String>,
    pub rule: Rule,
}

/// What `status` shows for one config item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemSecrets {
    pub key: String,
    /// Secret values (dotted paths): sealed on push with a passphrase, held back without.
    pub secrets: Vec<String>,
    /// Placeholders in the local file: values another machine holds that this one cannot read.
    pub waiting: Vec<String>,
}

/// The field-level codec of config items.
pub struct ConfigSecrets {
    detector: Detector,
    sealer: Option<Arc<Sealer>>,
}

impl ConfigSecrets {
    pub fn new(detector: Detector, sealer: Option<Arc<Sealer>>) -> ConfigSecrets {
        ConfigSecrets { detector, sealer }
    }

    /// Whether `key` is a config item whose values are looked into.
    pub fn applies_to(key: &str) -> bool {
        Syntax::of_key(key).is_some()
    }

    /// Whether values are sealed (a passphrase is set) rather than held back.
    pub fn seals(&self) -> bool {
        self.sealer.is_some()
    }

    /// The secret values of `text` (a config item's plaintext), with their paths.
    pub fn find(&self, key: &str, text: &[u8]) -> Result<Vec<Found>, SecretsError> {
        Ok(self.secrets(key, text)?.into_iter().map(|(s, rule)| Found { path: s.path, rule }).collect())
    }

    fn secrets(&self, key: &str, text: &[u8]) -> Result<Vec<(Scalar, Rule)>, SecretsError> {
        let (Some(syntax), Ok(text)) = (Syntax::of_key(key), std::str::from_utf8(text)) else { return Ok(Vec::new()) };
        let all = match doc::scalars(syntax, text) {
            Ok(all) => all,
            Err(e) if loose_secret(text) => return Err(SecretsError::Unreadable { key: key.into(), message: e.0 }),
            Err(_) => return Ok(Vec::new()),
        };
        Ok(all.into_iter().filter_map(|s| self.detector.check(&s.path, &s.value).map(|r| (s, r))).collect())
    }

    /// What the remote gets for `plaintext`: every secret value sealed (or held back without a
    /// passphrase). `previous` is the remote's current content of the item: its ciphertexts are
    /// reused for unchanged values, and its placeholders carried where this machine cannot seal.
    pub fn seal(&self, key: &str, plaintext: &[u8], previous: Option<&[u8]>) -> Result<Vec<u8>, SecretsError> {
        let secrets = self.secrets(key, plaintext)?;
        if secrets.is_empty() {
            return Ok(plaintext.to_vec());
        }
        let (syntax, text) = (Syntax::of_key(key).expect("has secrets"), std::str::from_utf8(plaintext).expect("has secrets"));
        let prev = values(syntax, previous);
        let mut new = Vec::with_capacity(secrets.len());
        for (s, _) in secrets {
            let before = prev.get(&s.path);
            let placeholder = match &self.sealer {
                Some(sealer) => match before.filter(|p| reusable(sealer, key, &s, p)) {
                    Some(p) => p.clone(),
                    None => seal_value(sealer, key, &s)?,
                },
                None => before.filter(|p| is_placeholder(p)).cloned().unwrap_or_else(|| HELD_BACK.to_owned()),
            };
            new.push((s.path, placeholder));
        }
        let out = doc::replace(syntax, text, &new).map_err(|e| SecretsError::Unreadable { key: key.into(), message: e.0 })?;
        // Belt and braces: nothing detected may be left in what leaves the machine.
        if let Some((s, _)) = self.secrets(key, out.as_bytes())?.into_iter().next() {
            return Err(SecretsError::NotHidden { key: key.into(), path: dotted(&s.path) });
        }
        Ok(out.into_bytes())
    }

    /// The plaintext of a remote copy: sealed values opened; placeholders this machine cannot read
    /// replaced by `local`'s value at the same path when it has one (else left as they are).
    pub fn open(&self, key: &str, remote: &[u8], local: Option<&[u8]>) -> Result<Vec<u8>, SecretsError> {
        let (Some(syntax), Ok(text)) = (Syntax::of_key(key), std::str::from_utf8(remote)) else { return Ok(remote.to_vec()) };
        let Ok(all) = doc::scalars(syntax, text) else { return Ok(remote.to_vec()) };
        let held: Vec<Scalar> = all.into_iter().filter(|s| is_placeholder(&s.value)).collect();
        if held.is_empty() {
            return Ok(remote.to_vec());
        }
        let mine = values(syntax, local);
        let mut new = Vec::new();
        for s in held {
            let value = match (&self.sealer, s.value.strip_prefix(SEALED_PREFIX)) {
                (Some(sealer), Some(sealed)) => Some(open_value(sealer, key, &s.path, sealed, syntax)?),
                _ => mine.get(&s.path).filter(|v| !is_placeholder(v)).cloned(),
            };
            if let Some(v) = value {
                new.push((s.path, v));
            }
        }
        let out = doc::replace(syntax, text, &new).map_err(|e| SecretsError::Unreadable { key: key.into(), message: e.0 })?;
        Ok(out.into_bytes())
    }

    /// The secrets and waiting placeholders of a local config item, for `status` (None: neither).
    pub fn report(&self, key: &str, text: &[u8]) -> Option<ItemSecrets> {
        let secrets: Vec<String> = self.find(key, text).ok()?.iter().map(|f| dotted(&f.path)).collect();
        let syntax = Syntax::of_key(key)?;
        let waiting: Vec<String> = doc::scalars(syntax, std::str::from_utf8(text).ok()?)
            .ok()?
            .into_iter()
            .filter(|s| is_placeholder(&s.value))
            .map(|s| dotted(&s.path))
            .collect();
        (!secrets.is_empty() || !waiting.is_empty()).then(|| ItemSecrets { key: key.into(), secrets, waiting })
    }

    /// Hides the values of a merge conflict that touch a secret of either side.
    pub fn redact(&self, key: &str, sides: [&[u8]; 2], c: &mut crate::merge::Conflict) {
        let found: Vec<(String, String)> = sides
            .iter()
            .flat_map(|t| self.secrets(key, t).unwrap_or_default())
            .map(|(s, _)| (pointer(&s.path), s.value))
            .collect();
        if found.is_empty() {
            return;
        }
        let touches = |shown: &str| {
            found.iter().any(|(p, v)| {
                let near = c.path.is_empty() || *p == c.path || p.starts_with(&format!("{}/", c.path)) || c.path.starts_with(&format!("{p}/"));
                let head: String = v.chars().take(8).collect();
                near || shown.contains(&head)
            })
        };
        for side in [&mut c.local, &mut c.remote, &mut c.base] {
            if side.as_deref().is_some_and(touches) {
                *side = Some("(secret, not shown)".into());
            }
        }
    }
}

/// The associated data of one sealed value: the item key and the value's JSON pointer.
fn aad(key: &str, path: &[String]) -> Vec<u8> {
    format!("oc-sync config secret\n{key}\n{}", pointer(path)).into_bytes()
}

fn seal_value(sealer: &Sealer, key: &str, s: &Scalar) -> Result<String, SecretsError> {
    let env = sealer
        .seal(s.value.as_bytes(), &aad(key, &s.path))
        .map_err(|source| SecretsError::Crypto { key: key.into(), path: dotted(&s.path), source })?;
    Ok(format!("{SEALED_PREFIX}{}", B64.encode(env)))
}

fn open_value(sealer: &Sealer, key: &str, path: &[String], sealed: &str, syntax: Syntax) -> Result<String, SecretsError> {
    let err = |source| SecretsError::Crypto { key: key.into(), path: dotted(path), source };
    let env = B64.decode(sealed).map_err(|_| err(CryptoError::Malformed("the sealed value is not valid base64".into())))?;
    let opened = sealer.open(&env, &aad(key, path)).map_err(err)?;
    let value = String::from_utf8(opened.plaintext).map_err(|_| err(CryptoError::Malformed("the value is not UTF-8".into())))?;
    if syntax == Syntax::FrontMatter && value.contains(['\n', '\r']) {
        return Err(err(CryptoError::Malformed("a front-matter value cannot span lines".into())));
    }
    Ok(value)
}

/// Whether the remote's previous placeholder `p` seals exactly `s` with the current passphrase
/// and settings (then it is pushed again instead of a fresh ciphertext).
fn reusable(sealer: &Sealer, key: &str, s: &Scalar, p: &str) -> bool {
    let Some(env) = p.strip_prefix(SEALED_PREFIX).and_then(|b| B64.decode(b).ok()) else { return false };
    match sealer.open(&env, &aad(key, &s.path)) {
        Ok(o) => !o.with_old_key && o.iterations >= sealer.iterations() && o.plaintext == s.value.as_bytes(),
        Err(_) => false,
    }
}

/// Path → string value of a text (empty when absent or unreadable).
fn values(syntax: Syntax, text: Option<&[u8]>) -> HashMap<Vec<String>, String> {
    text.and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| doc::scalars(syntax, t).ok())
        .map(|all| all.into_iter().map(|s| (s.path, s.value)).collect())
        .unwrap_or_default()
}

/// Whether unparsable text holds a word shaped like a secret.
fn loose_secret(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=_-.".contains(c)))
        .any(|w| Detector::default().check(&[], w).is_some())
}

#[cfg(test)]
mod tests;
