//! Writing to the GitHub remote: one compare-and-swap commit (see the module docs of
//! [`super`]). The new tree is built on top of the expected commit's tree: removed and deleted
//! items lose their file, changed items get theirs (inline text, an uploaded blob, an existing
//! blob, or parts under [`CHUNKS_DIR`] when too big for one GitHub file), then the manifest; a
//! commit whose only parent is the expected commit; and a fast-forward-only ref update.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::http::now_secs;
use super::{
    CHUNKS_DIR, GithubRemote, INLINE_MAX, MANIFEST_PATH, MAX_MESSAGE_BYTES, Snapshot, TREE_REQUEST_MAX, split_tree_entries,
    valid_oid,
};
use crate::remote::{Changes, CommitOutcome, Manifest, RemoteError, Version, truncate};

/// The new tree being built on top of the expected commit's.
struct TreeBuild<'b> {
    base_manifest: &'b Manifest,
    /// The expected commit's plain files (path → git blob sha).
    base_files: &'b HashMap<String, Option<String>>,
    /// Tree entries to send.
    tree: Vec<Value>,
    /// Paths written (Some: blob sha, None: inline or removed).
    new_files: BTreeMap<String, Option<String>>,
    /// Blobs uploaded in this commit: content hash → git blob sha.
    uploaded: HashMap<String, String>,
    /// Live items stored in parts: no file at their key path.
    chunked_keys: HashSet<String>,
}

impl TreeBuild<'_> {
    /// Removes the file at `path` from the tree.
    fn remove(&mut self, path: &str) {
        self.tree.push(json!({"path": path, "mode": "100644", "type": "blob", "sha": null}));
    }

    /// Puts the existing blob `sha` at `path`.
    fn put_sha(&mut self, path: String, sha: String) {
        self.tree.push(json!({"path": path, "mode": "100644", "type": "blob", "sha": sha}));
        self.new_files.insert(path, Some(sha));
    }

    /// Puts `text` at `path`, inline in the tree request.
    fn put_text(&mut self, path: String, text: &str) {
        self.tree.push(json!({"path": path, "mode": "100644", "type": "blob", "content": text}));
        self.new_files.insert(path, None);
    }

    /// Git blob sha of any base file holding `hash`.
    fn known_sha(&self, hash: &str) -> Option<String> {
        self.base_manifest
            .entries
            .iter()
            .filter(|(_, e)| e.hash.as_deref() == Some(hash))
            .find_map(|(k, _)| self.base_files.get(k).cloned().flatten())
    }
}

/// Refuses keys the GitHub remote cannot hold and an `expected` that is not a commit id.
fn check_commit(expected: Option<&Version>, changes: &Changes) -> Result<(), RemoteError> {
    for key in changes.entries.keys().chain(changes.removed.iter()) {
        if key == ".oc-sync" || key.starts_with(".oc-sync/") {
            return Err(RemoteError::InvalidChanges(format!(
                "key {key:?} is inside .oc-sync/, which the GitHub remote reserves"
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
    pub(super) fn do_commit(
        &self,
        expected: Option<&Version>,
        changes: Changes,
    ) -> Result<CommitOutcome, RemoteError> {
        changes.validate(&self.limits)?;
        check_commit(expected, &changes)?;
        self.ensure_private(false)?;
        // Early check (saves creating objects for nothing). Skipped when this remote just saw
        // `expected` as the head: the fast-forward-only ref update is the real check.
        let seen = self.cache().last_head.clone();
        if seen.as_ref().map(Option::as_ref) != Some(expected) {
            let current = self.read_head()?;
            if current.as_ref() != expected {
                return Ok(CommitOutcome::Conflict { current });
            }
        }
        let base = match expected {
            Some(v) => Some(self.snapshot(v)?),
            None => None,
        };
        let empty = Manifest::default();
        let no_files = HashMap::new();
        let mut build = TreeBuild {
            base_manifest: base.as_ref().map_or(&empty, |s| &s.manifest),
            base_files: base.as_ref().map_or(&no_files, |s| &s.files),
            tree: Vec::new(),
            new_files: BTreeMap::new(),
            uploaded: HashMap::new(),
            chunked_keys: HashSet::new(),
        };
        let new_manifest = build.base_manifest.apply(&changes);

        // Stay under GitHub's content-creation limits: tree + commit + ref, plus every blob upload.
        let uploads = self.count_uploads(&changes, build.base_manifest);
        self.reserve_content_writes(uploads + 3)?;
        self.record_content_writes(uploads + 3);

        self.build_tree(&mut build, &changes, &new_manifest)?;
        let tree_sha = self.post_tree(std::mem::take(&mut build.tree), base.as_ref().map(|b| b.tree_sha.clone()))?;
        let commit_sha = self.post_commit(&changes.message, &tree_sha, expected)?;
        if let Some(lost) = self.move_branch(expected, &commit_sha)? {
            return Ok(lost);
        }
        let version = Version(commit_sha);
        let (new_files, chunked_keys) = (build.new_files, build.chunked_keys);
        let snapshot = after_commit(base, new_files, &chunked_keys, tree_sha, new_manifest);
        self.remember_commit(&version, snapshot);
        Ok(CommitOutcome::Committed(version))
    }

    /// How many blob uploads the changes need (parts of chunked items, and items that are not
    /// UTF-8 text or over [`INLINE_MAX`]).
    fn count_uploads(&self, changes: &Changes, base_manifest: &Manifest) -> usize {
        changes
            .entries
            .iter()
            .filter(|(k, e)| {
                e.hash.as_ref().is_some_and(|h| {
                    base_manifest.entries.get(*k).is_none_or(|old| old.hash.as_ref() != Some(h))
                })
            })
            .filter_map(|(_, e)| changes.blobs.get(e.hash.as_deref()?))
            .map(|b| {
                if b.len() > self.chunk_bytes {
                    b.len().div_ceil(self.chunk_bytes)
                } else {
                    usize::from(b.len() > INLINE_MAX || std::str::from_utf8(b).is_err())
                }
            })
            .sum()
    }

    /// The tree entries of the commit: removals, changed items, parts no longer needed, and the
    /// new manifest.
    fn build_tree(&self, build: &mut TreeBuild<'_>, changes: &Changes, new_manifest: &Manifest) -> Result<(), RemoteError> {
        for key in &changes.removed {
            if build.base_files.contains_key(key) {
                build.remove(key);
                build.new_files.insert(key.clone(), None);
            }
        }
        for (key, e) in &changes.entries {
            let Some(hash) = &e.hash else {
                if build.base_files.contains_key(key) {
                    build.remove(key);
                    build.new_files.insert(key.clone(), None);
                }
                continue;
            };
            self.put_item(build, changes, key, hash)?;
        }
        // Parts of chunked items no live entry names any more.
        let live: HashSet<&str> = new_manifest.blob_hashes().collect();
        for path in build.base_files.keys() {
            if let Some(rest) = path.strip_prefix(CHUNKS_DIR).and_then(|r| r.strip_prefix('/'))
                && !live.contains(rest.split('/').next().unwrap_or(""))
            {
                build.tree.push(json!({"path": path, "mode": "100644", "type": "blob", "sha": null}));
                build.new_files.insert(path.clone(), None);
            }
        }
        let manifest_text = serde_json::to_string_pretty(new_manifest).map_err(|e| {
            RemoteError::InvalidChanges(format!("cannot serialize the manifest: {e}"))
        })? + "\n";
        if manifest_text.len() as u64 > self.limits.max_manifest_bytes {
            return Err(RemoteError::InvalidChanges(format!(
                "the new manifest would be {} bytes, over the {} byte limit",
                manifest_text.len(),
                self.limits.max_manifest_bytes
            )));
        }
        build.put_text(MANIFEST_PATH.to_owned(), &manifest_text);
        Ok(())
    }

    /// The tree entries of one live item with content `hash` (none when its file is unchanged).
    fn put_item(&self, build: &mut TreeBuild<'_>, changes: &Changes, key: &str, hash: &str) -> Result<(), RemoteError> {
        let unchanged = build
            .base_manifest
            .entries
            .get(key)
            .is_some_and(|old| old.hash.as_deref() == Some(hash))
            && build.base_files.contains_key(key);
        if unchanged {
            return Ok(());
        }
        let chunked_before = !build.base_files.contains_key(key);
        let first_part = format!("{CHUNKS_DIR}/{hash}/00000");
        if !changes.blobs.contains_key(hash) && build.base_files.contains_key(&first_part) {
            // Already stored in parts (e.g. the same content under another key).
            build.chunked_keys.insert(key.to_owned());
            if !chunked_before {
                build.remove(key);
            }
            return Ok(());
        }
        if let Some(bytes) = changes.blobs.get(hash).filter(|b| b.len() > self.chunk_bytes) {
            build.chunked_keys.insert(key.to_owned());
            self.put_parts(build, key, hash, bytes)?;
            if !chunked_before {
                build.remove(key);
            }
            return Ok(());
        }
        if let Some(bytes) = changes.blobs.get(hash) {
            match std::str::from_utf8(bytes) {
                Ok(text) if bytes.len() <= INLINE_MAX => build.put_text(key.to_owned(), text),
                _ => {
                    let sha = match build.uploaded.get(hash) {
                        Some(s) => s.clone(),
                        None => {
                            let sha = self.upload(&format!("upload the content of {key}"), bytes)?;
                            build.uploaded.insert(hash.to_owned(), sha.clone());
                            sha
                        }
                    };
                    build.put_sha(key.to_owned(), sha);
                }
            }
        } else if let Some(sha) = build.known_sha(hash) {
            build.put_sha(key.to_owned(), sha);
        } else {
            return Err(RemoteError::InvalidChanges(format!(
                "entry {key:?} names blob {hash}, which is neither in the change set nor on \
                 the remote"
            )));
        }
        Ok(())
    }

    /// Too big for one GitHub file: uploads the parts not stored yet under
    /// `.oc-sync/chunks/<sha256>/`.
    fn put_parts(&self, build: &mut TreeBuild<'_>, key: &str, hash: &str, bytes: &[u8]) -> Result<(), RemoteError> {
        for (i, part) in bytes.chunks(self.chunk_bytes).enumerate() {
            let path = format!("{CHUNKS_DIR}/{hash}/{i:05}");
            if build.base_files.contains_key(&path) {
                continue;
            }
            let sha = self.upload(&format!("upload part {} of {key}", i + 1), part)?;
            build.put_sha(path, sha);
        }
        Ok(())
    }

    /// `POST git/blobs`: the new blob's sha.
    fn upload(&self, what: &str, bytes: &[u8]) -> Result<String, RemoteError> {
        let v = self.post_json(what, "/git/blobs", &json!({"content": B64.encode(bytes), "encoding": "base64"}))?;
        self.sha_of(what, &v)
    }

    /// One tree request, or several (each on top of the previous) when the inline contents
    /// would make one request too big. Returns the new tree's sha.
    fn post_tree(&self, tree: Vec<Value>, base_tree: Option<String>) -> Result<String, RemoteError> {
        let batches = split_tree_entries(tree, TREE_REQUEST_MAX);
        if batches.len() > 1 {
            self.reserve_content_writes(batches.len() - 1)?;
            self.record_content_writes(batches.len() - 1);
        }
        let mut tree_sha = base_tree;
        let what = format!("create the new file tree in {}", self.name());
        for batch in batches {
            let mut tree_body = json!({"tree": batch});
            if let Some(t) = &tree_sha {
                tree_body["base_tree"] = json!(t);
            }
            let v = self.post_json(&what, "/git/trees", &tree_body)?;
            tree_sha = Some(self.sha_of(&what, &v)?);
        }
        Ok(tree_sha.expect("at least the manifest is written"))
    }

    /// The sync commit (its only parent: `expected`); returns its sha.
    fn post_commit(&self, message: &str, tree_sha: &str, expected: Option<&Version>) -> Result<String, RemoteError> {
        let message = if message.trim().is_empty() {
            "oc-sync".to_owned()
        } else {
            truncate(message, MAX_MESSAGE_BYTES).to_owned()
        };
        let parents: Vec<&str> = expected.iter().map(|v| v.0.as_str()).collect();
        let what = format!("create the sync commit in {}", self.name());
        let v = self.post_json(
            &what,
            "/git/commits",
            &json!({"message": message, "tree": tree_sha, "parents": parents}),
        )?;
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

    /// Caches the snapshot of the new head and persists it as the last push.
    fn remember_commit(&self, version: &Version, snapshot: Snapshot) {
        {
            let mut cache = self.cache();
            cache.last_head = Some(Some(version.clone()));
            cache.insert(version.clone(), snapshot);
        }
        {
            let mut p = self.persisted();
            p.head = Some(version.0.clone());
            p.ref_etag = None;
            p.facts.last_push_sha = Some(version.0.clone());
            p.facts.last_push_s = Some(now_secs());
        }
        self.save_persisted();
    }
}

/// The snapshot of the new commit: the base's files with the tree's changes applied.
fn after_commit(
    base: Option<Snapshot>,
    new_files: BTreeMap<String, Option<String>>,
    chunked_keys: &HashSet<String>,
    tree_sha: String,
    new_manifest: Manifest,
) -> Snapshot {
    let mut not_files = base.as_ref().map(|b| b.not_files.clone()).unwrap_or_default();
    not_files.retain(|p, _| !new_files.contains_key(p));
    let mut files = base.map(|b| b.files).unwrap_or_default();
    for k in chunked_keys {
        files.remove(k);
    }
    for (path, sha) in new_files {
        match sha {
            Some(s) => {
                files.insert(path, Some(s));
            }
            None if path == MANIFEST_PATH
                || new_manifest
                    .entries
                    .get(&path)
                    .is_some_and(|e| e.hash.is_some()) =>
            {
                // Written inline: the sha is unknown until the tree is listed.
                files.insert(path, None);
            }
            None => {
                files.remove(&path);
            }
        }
    }
    Snapshot { tree_sha, manifest: new_manifest, files, not_files }
}
