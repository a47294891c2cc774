//! Reading a branch still in repository format 1 (oc-sync 0.1), for the upgrade: the manifest at
//! `.oc-sync/manifest.json` (every entry), each live item's bytes as the file at its key path,
//! items too big for one file as parts `.oc-sync/chunks/<hash>/<i:05>`. Everything is checked as
//! format 1 checked it (the manifest validated, each blob against its sha256). Contents are read
//! raw; when many are wanted, one tarball of the commit brings them all.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use super::{CHUNKS_DIR, FormatOnly, GithubRemote, MANIFEST_PATH, TARBALL_MIN_BLOBS, tarball};
use crate::remote::envelope::FORMAT_FILE;
use crate::remote::{MANIFEST_FORMAT, Manifest, RemoteError, Version, sha256_hex};

/// The format-1 snapshot read by [`GithubRemote::read_format1`].
pub(super) struct Snapshot1 {
    version: Version,
    manifest: Manifest,
    /// Plain files → blob id.
    files: HashMap<String, String>,
    /// Entries that are not plain files → what they are.
    not_files: BTreeMap<String, String>,
    /// Whether the tarball was read already.
    bulk_done: bool,
}

impl GithubRemote {
    fn parse_manifest(&self, at: &Version, bytes: &[u8]) -> Result<Manifest, RemoteError> {
        let what = format!("{MANIFEST_PATH} of commit {at} in {}", self.describe_repo());
        let m: Manifest = match serde_json::from_slice(bytes) {
            Ok(m) => m,
            Err(e) => {
                if let Ok(f) = serde_json::from_slice::<FormatOnly>(bytes)
                    && f.format > MANIFEST_FORMAT
                {
                    return Err(RemoteError::UnsupportedFormat { found: f.format, supported: MANIFEST_FORMAT });
                }
                return Err(RemoteError::Corrupt(format!("{what} is not a valid manifest: {e}")));
            }
        };
        m.validate(&what)?;
        Ok(m)
    }

    /// The branch's current snapshot when it is in format 1 (see [`crate::remote::Remote::format1`]).
    pub(super) fn read_format1(&self) -> Result<Option<(Version, Manifest)>, RemoteError> {
        let Some(head) = self.read_head()? else { return Ok(None) };
        let l = self.list_tree(&head.0)?;
        if l.files.contains_key(FORMAT_FILE) {
            return Ok(None);
        }
        if let Some(what) = l.not_files.get(MANIFEST_PATH) {
            return Err(RemoteError::Corrupt(format!("{MANIFEST_PATH} in commit {head} of {} is {what}, not a file", self.describe_repo())));
        }
        let Some(sha) = l.files.get(MANIFEST_PATH) else { return Ok(None) };
        let bytes = self.get_raw_checked(sha, self.limits.max_manifest_bytes, MANIFEST_PATH)?;
        let manifest = self.parse_manifest(&head, &bytes)?;
        *self.f1.lock().unwrap_or_else(|e| e.into_inner()) = Some(Snapshot1 {
            version: head.clone(),
            manifest: manifest.clone(),
            files: l.files,
            not_files: l.not_files,
            bulk_done: false,
        });
        Ok(Some((head, manifest)))
    }

    /// The blob id of part `i` of `hash` in the format-1 snapshot, if it has one.
    pub(super) fn format1_part(&self, hash: &str, i: u32) -> Option<String> {
        let f1 = self.f1.lock().unwrap_or_else(|e| e.into_inner());
        f1.as_ref()?.files.get(&format!("{CHUNKS_DIR}/{hash}/{i:05}")).cloned()
    }

    /// A blob of the format-1 snapshot (sha256 checked).
    pub(super) fn read_format1_blob(&self, hash: &str) -> Result<Vec<u8>, RemoteError> {
        if let Some(b) = self.mem().get(hash) {
            return Ok(b);
        }
        if let Some(b) = self.from_disk(hash) {
            return Ok(b);
        }
        let (version, key_file, parts, bulk) = {
            let f1 = self.f1.lock().unwrap_or_else(|e| e.into_inner());
            let Some(f) = f1.as_ref() else {
                return Err(RemoteError::Corrupt(format!("no format-1 snapshot of {} was read (call format1 first)", self.describe_repo())));
            };
            let keys: Vec<&String> =
                f.manifest.entries.iter().filter(|(_, e)| e.hash.as_deref() == Some(hash)).map(|(k, _)| k).collect();
            if keys.is_empty() {
                return Err(RemoteError::Corrupt(format!("blob {hash} is not in the format-1 manifest of {}", self.describe_repo())));
            }
            if let Some(k) = keys.iter().find(|k| f.not_files.contains_key(k.as_str())) {
                return Err(RemoteError::Corrupt(format!(
                    "{k} in {} is {}: refused (oc-sync only reads plain files)",
                    self.describe_repo(),
                    f.not_files[k.as_str()]
                )));
            }
            let key_file = keys.iter().find_map(|k| f.files.get(k.as_str()).map(|s| (k.to_string(), s.clone())));
            let prefix = format!("{CHUNKS_DIR}/{hash}/");
            let mut parts: Vec<(String, String)> =
                f.files.iter().filter(|(p, _)| p.starts_with(&prefix)).map(|(p, s)| (p.clone(), s.clone())).collect();
            parts.sort();
            // Many blobs still to read: one tarball instead (once).
            let bulk = (!f.bulk_done && f.manifest.entries.values().filter(|e| e.hash.is_some()).count() >= TARBALL_MIN_BLOBS)
                .then(|| {
                    let wanted: HashMap<String, String> = f
                        .manifest
                        .entries
                        .iter()
                        .filter(|(_, e)| e.hash.is_some())
                        .filter_map(|(k, _)| f.files.get(k).map(|s| (k.clone(), s.clone())))
                        .collect();
                    let sums: HashMap<String, String> = f
                        .manifest
                        .entries
                        .iter()
                        .filter_map(|(k, e)| e.hash.clone().map(|h| (k.clone(), h)))
                        .collect();
                    (wanted, sums)
                });
            (f.version.clone(), key_file, parts, bulk)
        };
        if let Some((wanted, sums)) = bulk {
            if let Some(f) = self.f1.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                f.bulk_done = true;
            }
            self.format1_bulk(&version, &wanted, &sums)?;
            if let Some(b) = self.mem().get(hash) {
                return Ok(b);
            }
            if let Some(b) = self.from_disk(hash) {
                return Ok(b);
            }
        }
        if !parts.is_empty() {
            for (i, (p, _)) in parts.iter().enumerate() {
                if *p != format!("{CHUNKS_DIR}/{hash}/{i:05}") {
                    return Err(RemoteError::Corrupt(format!(
                        "the parts of blob {hash} in {} are not numbered 0..{}",
                        self.describe_repo(),
                        parts.len()
                    )));
                }
            }
            let shas: Vec<Option<String>> = parts.into_iter().map(|(_, s)| Some(s)).collect();
            return self.read_parts_f1(hash, &shas);
        }
        let Some((key, sha)) = key_file else {
            return Err(RemoteError::Corrupt(format!(
                "the format-1 manifest of {} lists blob {hash}, but its file is missing",
                self.describe_repo()
            )));
        };
        let bytes = self.get_raw_checked(&sha, self.limits.max_blob_bytes, &key)?;
        let actual = sha256_hex(&bytes);
        if actual != hash {
            return Err(RemoteError::Corrupt(format!(
                "{key} in {} hashes to {actual}, not to {hash} as its manifest says",
                self.describe_repo()
            )));
        }
        Ok(bytes)
    }

    fn read_parts_f1(&self, hash: &str, shas: &[Option<String>]) -> Result<Vec<u8>, RemoteError> {
        // Format 1 named parts with five digits and had no missing part (a missing one reads as "").
        let named = shas.iter().enumerate().map(|(i, sha)| (format!("{CHUNKS_DIR}/{hash}/{i:05}"), Some(sha.as_deref().unwrap_or_default())));
        self.join_parts(hash, named)
    }

    /// Reads the format-1 contents in bulk from the tarball of `version` into the caches; each
    /// file's git blob id and sha256 are checked. Failures only mean reading one by one.
    fn format1_bulk(&self, version: &Version, wanted: &HashMap<String, String>, sums: &HashMap<String, String>) -> Result<(), RemoteError> {
        self.clear_disk_cache();
        let mut tmp = tempfile::tempfile_in(self.blob_dir()?)
            .map_err(|e| RemoteError::io(format!("cannot create a temporary file in {}", self.blob_dir.display()), e))?;
        let cap = self.limits.max_blob_bytes.saturating_mul(64);
        match self.http.get_to_file(&format!("{}/tarball/{}", self.repo_path(), version.0), cap, &mut tmp) {
            Ok(None) => {}
            Ok(Some(_)) | Err(RemoteError::Corrupt(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        use std::io::Seek;
        tmp.seek(std::io::SeekFrom::Start(0)).map_err(|e| RemoteError::io("cannot read the downloaded tarball", e))?;
        let walked = tarball::walk(std::io::BufReader::new(tmp), wanted, self.limits.max_blob_bytes, |path, oid, size, r| {
            let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
            r.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
            if super::read::git_blob_sha(&bytes) != oid {
                return Err("git blob id differs from the tree's".into());
            }
            let hash = hex::encode(Sha256::digest(&bytes));
            if sums.get(path) != Some(&hash) {
                return Err("content differs from the manifest's hash".into());
            }
            self.keep_on_disk(&hash, &bytes);
            Ok(())
        });
        if let Err(e) = walked {
            tracing::info!("bulk download of {version}: {e}; reading files one by one");
        }
        Ok(())
    }
}
