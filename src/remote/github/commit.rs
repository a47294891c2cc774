//! Writing to the GitHub remote: one compare-and-swap commit (see the module docs of [`super`]).
//! The new tree is built on top of the expected commit's tree with one entry per changed item:
//! its item file (header + bytes, see [`crate::remote::envelope`]) inline as text when it is
//! UTF-8, an uploaded blob otherwise, parts under `.oc-sync/chunks/` when too big for one GitHub
//! file; removed items lose their file. Then a commit whose only parent is the expected commit,
//! and a fast-forward-only ref update. The tree index moves to the new commit without reading
//! anything back: each written file's git blob id is computed here.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::http::now_secs;
use super::read::{git_blob_sha, is_item_path};
use super::{GithubRemote, INLINE_MAX, MAX_MESSAGE_BYTES, TREE_REQUEST_MAX, split_tree_entries, valid_oid};
use crate::remote::envelope::{self, FORMAT_FILE, LEGACY_MANIFEST};
use crate::remote::{Changes, CommitOutcome, Entry, RemoteError, Version, truncate};

/// One file the new tree gets (or loses).
enum Put {
    /// Item at key: its entry, parts, and file blob id.
    Item { key: String, entry: Entry, parts: Option<u32>, oid: String },
    /// Item file removed.
    Gone(String),
    /// One of oc-sync's own files (None: removed).
    Own(String, Option<String>),
}

/// The tree entries being built, and what the index learns from them.
#[derive(Default)]
struct Build {
    tree: Vec<Value>,
    puts: Vec<Put>,
    /// Contents written, for the memory cache (hash → bytes).
    written: Vec<(String, Vec<u8>)>,
    uploads: usize,
}

impl Build {
    fn inline(&mut self, path: &str, text: &str) -> String {
        self.tree.push(json!({"path": path, "mode": "100644", "type": "blob", "content": text}));
        git_blob_sha(text.as_bytes())
    }
    fn sha(&mut self, path: &str, sha: &str) {
        self.tree.push(json!({"path": path, "mode": "100644", "type": "blob", "sha": sha}));
    }
    fn remove(&mut self, path: &str) {
        self.tree.push(json!({"path": path, "mode": "100644", "type": "blob", "sha": null}));
    }
}

/// Refuses keys the GitHub remote cannot hold and an `expected` that is not a commit id.
fn check_commit(expected: Option<&Version>, changes: &Changes) -> Result<(), RemoteError> {
    for key in changes.entries.keys().chain(changes.removed.iter()) {
        if envelope::is_own_path(key) {
            return Err(RemoteError::InvalidChanges(format!(
                "key {key:?} is inside .oc-sync/, which the GitHub remote reserves"
            )));
        }
        if !is_item_path(key) {
            return Err(RemoteError::InvalidChanges(format!(
                "key {key:?} is not inside a folder; the GitHub remote keeps the repository's root for people"
            )));
        }
        if key.split('/').any(|c| c.eq_ignore_ascii_case(".git")) {
            return Err(RemoteError::InvalidChanges(format!(
                "key {key:?} has a .git component, which GitHub refuses"
            )));
        }
    }
    if let Some(v) = expected
        && !valid_oid(&v.0)
    {
        return Err(RemoteError::InvalidChanges(format!(
            "expected version {:?} is not a commit id",
            truncate(&v.0, 80)
        )));
    }
    Ok(())
}

impl GithubRemote {
    pub(super) fn do_commit(&self, expected: Option<&Version>, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        changes.validate(&self.limits)?;
        check_commit(expected, &changes)?;
        self.ensure_private(false)?;
        // Early check (saves creating objects for nothing). Skipped when this remote just saw
        // `expected` as the head: the fast-forward-only ref update is the real check.
        let seen = self.state().last_head.clone();
        if seen.as_ref().map(Option::as_ref) != Some(expected) {
            let current = self.read_head()?;
            if current.as_ref() != expected {
                return Ok(CommitOutcome::Conflict { current });
            }
        }
        let base_tree = match expected {
            Some(v) => {
                self.sync_index(v)?;
                self.state().tree_sha.clone()
            }
            None => None,
        };
        let mut build = Build::default();
        self.build_changes(&mut build, &changes, expected.is_some())?;
        self.finish(build, base_tree, &changes.message, expected, true)
    }

    /// Replaces the format-1 snapshot `from` by a fresh format-2 tree holding exactly
    /// `changes.entries` (see [`crate::remote::Remote::upgrade`]).
    pub(super) fn do_upgrade(&self, from: &Version, changes: Changes) -> Result<CommitOutcome, RemoteError> {
        changes.validate(&self.limits)?;
        check_commit(Some(from), &changes)?;
        if !changes.removed.is_empty() {
            return Err(RemoteError::InvalidChanges("an upgrade removes nothing: it writes exactly its entries".into()));
        }
        self.ensure_private(false)?;
        let current = self.read_head()?;
        if current.as_ref() != Some(from) {
            return Ok(CommitOutcome::Conflict { current });
        }
        {
            // The new tree starts from nothing.
            let mut s = self.state();
            s.ix.clear();
            s.tree_sha = None;
            s.own_files.clear();
            s.not_files.clear();
        }
        let mut build = Build::default();
        self.build_changes(&mut build, &changes, false)?;
        self.finish(build, None, &changes.message, Some(from), false)
    }

    /// Tree entries for every changed, deleted and removed item, parts no item needs any more,
    /// and (when missing) the format file and the format-1 stub.
    fn build_changes(&self, b: &mut Build, changes: &Changes, has_base: bool) -> Result<(), RemoteError> {
        for key in &changes.removed {
            let present = {
                let s = self.state();
                s.ix.items.contains_key(key) || s.not_files.contains_key(key)
            };
            if present {
                b.remove(key);
                b.puts.push(Put::Gone(key.clone()));
            }
        }
        for (key, e) in &changes.entries {
            let (same, old_parts) = {
                let s = self.state();
                let old = s.ix.items.get(key);
                (old.is_some_and(|o| &o.entry == e) && !s.not_files.contains_key(key), old.and_then(|o| o.parts))
            };
            if same && has_base {
                continue;
            }
            let Some(hash) = &e.hash else {
                let file = envelope::encode(e, None);
                let text = String::from_utf8(file).expect("a header is UTF-8");
                let oid = b.inline(key, &text);
                b.puts.push(Put::Item { key: key.clone(), entry: e.clone(), parts: None, oid });
                continue;
            };
            // Already stored in parts (this key or another): a new header naming the same parts.
            let stored_parts = old_parts.filter(|_| self.state().ix.items.get(key).and_then(|o| o.entry.hash.clone()).as_ref() == Some(hash)).or_else(|| {
                let s = self.state();
                s.ix.find_hash(hash).and_then(|(_, ix)| ix.parts)
            });
            if let Some(n) = stored_parts.filter(|_| !changes.blobs.contains_key(hash)) {
                let text = String::from_utf8(envelope::encode_parted(e, n)).expect("a header is UTF-8");
                let oid = b.inline(key, &text);
                b.puts.push(Put::Item { key: key.clone(), entry: e.clone(), parts: Some(n), oid });
                continue;
            }
            let bytes = match changes.blobs.get(hash) {
                Some(bytes) => std::borrow::Cow::Borrowed(bytes),
                // Not in the change set: the remote holds it (under this key or another).
                None => std::borrow::Cow::Owned(self.known_bytes(key, hash)?),
            };
            if bytes.len() > self.chunk_bytes {
                let n = self.put_parts(b, key, hash, &bytes)?;
                let text = String::from_utf8(envelope::encode_parted(e, n)).expect("a header is UTF-8");
                let oid = b.inline(key, &text);
                b.puts.push(Put::Item { key: key.clone(), entry: e.clone(), parts: Some(n), oid });
                continue;
            }
            let file = envelope::encode(e, Some(&bytes));
            let oid = match String::from_utf8(file) {
                Ok(text) if text.len() <= INLINE_MAX => b.inline(key, &text),
                Ok(text) => self.upload_into(b, key, text.as_bytes(), &format!("upload the item file of {key}"))?,
                Err(e) => self.upload_into(b, key, e.as_bytes(), &format!("upload the item file of {key}"))?,
            };
            b.puts.push(Put::Item { key: key.clone(), entry: e.clone(), parts: None, oid });
            if bytes.len() <= super::read::SMALL_ITEM {
                b.written.push((hash.clone(), bytes.into_owned()));
            }
        }
        // Parts no item of the new snapshot stores.
        let (parted, own_parts): (HashSet<String>, Vec<String>) = {
            let s = self.state();
            let mut live: HashSet<String> = s
                .ix
                .items
                .iter()
                .filter(|(k, _)| !changes.entries.contains_key(*k) && !changes.removed.contains(*k))
                .filter(|(_, ix)| ix.parts.is_some())
                .filter_map(|(_, ix)| ix.entry.hash.clone())
                .collect();
            for p in &b.puts {
                if let Put::Item { entry, parts: Some(_), .. } = p {
                    live.extend(entry.hash.clone());
                }
            }
            let own = s.own_files.keys().filter(|p| p.starts_with(envelope::CHUNKS_DIR)).cloned().collect();
            (live, own)
        };
        for path in own_parts {
            let hash = path.trim_start_matches(envelope::CHUNKS_DIR).trim_start_matches('/').split('/').next().unwrap_or("");
            if !parted.contains(hash) {
                b.remove(&path);
                b.puts.push(Put::Own(path, None));
            }
        }
        let has_format = self.state().own_files.contains_key(FORMAT_FILE);
        if !has_format {
            let oid = b.inline(FORMAT_FILE, std::str::from_utf8(envelope::format_file_content()).expect("text"));
            b.puts.push(Put::Own(FORMAT_FILE.into(), Some(oid)));
            let stub = String::from_utf8(envelope::legacy_manifest_stub()).expect("text");
            let oid = b.inline(LEGACY_MANIFEST, &stub);
            b.puts.push(Put::Own(LEGACY_MANIFEST.into(), Some(oid)));
        }
        Ok(())
    }

    /// The bytes of `hash` the remote already holds (an entry whose content did not change, or
    /// the same content under another key): from the caches, else read.
    fn known_bytes(&self, key: &str, hash: &str) -> Result<Vec<u8>, RemoteError> {
        if self.state().ix.find_hash(hash).is_none() {
            if let Some(b) = self.mem().get(hash) {
                return Ok(b);
            }
            return Err(RemoteError::InvalidChanges(format!(
                "entry {key:?} names blob {hash}, which is neither in the change set nor on the remote"
            )));
        }
        self.read_blob(hash)
    }

    /// Uploads `file` (`POST git/blobs`, base64) and puts it at `path`; returns its blob id.
    fn upload_into(&self, b: &mut Build, path: &str, file: &[u8], what: &str) -> Result<String, RemoteError> {
        let sha = self.upload(what, file)?;
        let local = git_blob_sha(file);
        if sha != local {
            return Err(RemoteError::Corrupt(format!(
                "GitHub stored {what} as blob {sha}, but its git blob id is {local}"
            )));
        }
        b.sha(path, &sha);
        b.uploads += 1;
        Ok(sha)
    }

    /// Too big for one GitHub file: the parts not stored yet, under `.oc-sync/chunks/<hash>/`.
    fn put_parts(&self, b: &mut Build, key: &str, hash: &str, bytes: &[u8]) -> Result<u32, RemoteError> {
        let mut n = 0u32;
        for (i, part) in bytes.chunks(self.chunk_bytes).enumerate() {
            let path = envelope::part_path(hash, i as u32);
            n += 1;
            let known = self.state().own_files.get(&path).cloned();
            let local = git_blob_sha(part);
            if known.as_deref() == Some(local.as_str()) {
                continue;
            }
            // The same part kept by format 1 (an upgrade): reuse its blob.
            let f1 = self.format1_part(hash, i as u32).filter(|s| *s == local);
            let sha = match f1 {
                Some(s) => {
                    b.sha(&path, &s);
                    s
                }
                None => self.upload_into(b, &path, part, &format!("upload part {} of {key}", i + 1))?,
            };
            b.puts.push(Put::Own(path, Some(sha)));
        }
        Ok(n)
    }

    /// `POST git/blobs`: the new blob's sha.
    fn upload(&self, what: &str, bytes: &[u8]) -> Result<String, RemoteError> {
        self.reserve_content_writes(1)?;
        self.record_content_writes(1);
        let v = self.post_json(what, "/git/blobs", &json!({"content": B64.encode(bytes), "encoding": "base64"}))?;
        self.sha_of(what, &v)
    }

    /// Sends the tree (in several requests when big), the commit and the ref update, then moves
    /// the index to the new commit.
    fn finish(
        &self,
        b: Build,
        base_tree: Option<String>,
        message: &str,
        parent: Option<&Version>,
        incremental: bool,
    ) -> Result<CommitOutcome, RemoteError> {
        let batches = split_tree_entries(b.tree, TREE_REQUEST_MAX);
        self.reserve_content_writes(batches.len() + 2)?;
        self.record_content_writes(batches.len() + 2);
        let mut tree_sha = base_tree;
        let what = format!("create the new file tree in {}", self.name());
        for batch in batches {
            let mut body = json!({"tree": batch});
            if let Some(t) = &tree_sha {
                body["base_tree"] = json!(t);
            }
            let v = self.post_json(&what, "/git/trees", &body)?;
            tree_sha = Some(self.sha_of(&what, &v)?);
        }
        let tree_sha = tree_sha.expect("at least one tree request");
        let commit_sha = self.post_commit(message, &tree_sha, parent)?;
        if let Some(lost) = self.move_branch(parent, &commit_sha)? {
            if !incremental {
                // The index was cleared for the upgrade: start over from the remote.
                *self.state() = super::read::State::default();
            }
            return Ok(lost);
        }
        let version = Version(commit_sha);
        {
            let mut s = self.state();
            for p in b.puts {
                match p {
                    Put::Item { key, entry, parts, oid } => {
                        s.not_files.remove(&key);
                        s.ix.put(&key, &oid, entry, parts);
                    }
                    Put::Gone(key) => {
                        s.not_files.remove(&key);
                        s.ix.remove(&key);
                    }
                    Put::Own(path, Some(oid)) => {
                        s.own_files.insert(path, oid);
                    }
                    Put::Own(path, None) => {
                        s.own_files.remove(&path);
                    }
                }
            }
            s.tree_sha = Some(tree_sha);
            s.ix.version = Some(version.clone());
            s.last_head = Some(Some(version.clone()));
        }
        for (h, bytes) in b.written {
            self.mem().put(&h, bytes);
        }
        {
            let mut p = self.persisted();
            p.head = Some(version.0.clone());
            p.ref_etag = None;
            p.facts.last_push_sha = Some(version.0.clone());
            p.facts.last_push_s = Some(now_secs());
        }
        self.save_index();
        Ok(CommitOutcome::Committed(version))
    }

    /// The sync commit (its only parent: `parent`); returns its sha.
    fn post_commit(&self, message: &str, tree_sha: &str, parent: Option<&Version>) -> Result<String, RemoteError> {
        let message = if message.trim().is_empty() {
            "oc-sync".to_owned()
        } else {
            truncate(message, MAX_MESSAGE_BYTES).to_owned()
        };
        let parents: Vec<&str> = parent.iter().map(|v| v.0.as_str()).collect();
        let what = format!("create the sync commit in {}", self.name());
        let v = self.post_json(&what, "/git/commits", &json!({"message": message, "tree": tree_sha, "parents": parents}))?;
        self.sha_of(&what, &v)
    }

    /// The compare-and-swap: moves the branch to `commit_sha` if it still is at `expected`.
    /// Some(conflict) when another commit got there first.
    fn move_branch(&self, expected: Option<&Version>, commit_sha: &str) -> Result<Option<CommitOutcome>, RemoteError> {
        let what = format!("move branch {} of {}", self.branch, self.name());
        let r = match expected {
            Some(_) => self.send(
                "PATCH",
                &format!("{}/git/refs/heads/{}", self.repo_path(), self.branch),
                Some(&json!({"sha": commit_sha, "force": false})),
            )?,
            None => self.send(
                "POST",
                &format!("{}/git/refs", self.repo_path()),
                Some(&json!({"ref": format!("refs/heads/{}", self.branch), "sha": commit_sha})),
            )?,
        };
        match r.status {
            200 | 201 => Ok(None),
            // 422: not a fast forward / reference already exists; 409 after a concurrent change.
            422 | 409 => {
                let current = self.read_head()?;
                if current.as_ref() != expected {
                    return Ok(Some(CommitOutcome::Conflict { current }));
                }
                Err(self.http_error(&what, &r))
            }
            _ => Err(self.http_error(&what, &r)),
        }
    }
}

