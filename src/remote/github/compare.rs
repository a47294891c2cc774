//! Reading a new head cheaply: the snapshot of a commit from a cached earlier snapshot plus
//! GitHub's `compare/{old}...{new}` (the list of changed files and the new tree id).

use std::collections::HashMap;

use serde::Deserialize;

use super::{COMPARE_MAX_FILES, GithubRemote, MANIFEST_PATH, Snapshot, valid_oid};
use crate::remote::{RemoteError, Version};

#[derive(Deserialize)]
struct Compare {
    status: String,
    #[serde(default)]
    files: Vec<CmpFile>,
    #[serde(default)]
    commits: Vec<CmpCommit>,
}

#[derive(Deserialize)]
struct CmpFile {
    filename: String,
    status: String,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    previous_filename: Option<String>,
}

#[derive(Deserialize)]
struct CmpCommit {
    sha: String,
    commit: CmpInner,
}

#[derive(Deserialize)]
struct CmpInner {
    tree: CmpTree,
}

#[derive(Deserialize)]
struct CmpTree {
    sha: String,
}

/// The plain files and the other entries of a tree, as in [`Snapshot`].
type Files = (HashMap<String, Option<String>>, HashMap<String, String>);

impl GithubRemote {
    /// The snapshot of `at` from a cached earlier snapshot plus `compare/{old}...{at}`: one
    /// request for the list of changed files (and the new tree id), then the manifest blob if it
    /// changed. None when no cached snapshot is an ancestor or the listing may be incomplete.
    pub(super) fn snapshot_by_compare(&self, at: &Version) -> Result<Option<Snapshot>, RemoteError> {
        let Some((base_v, base)) = ({
            let c = self.cache();
            let last = c.last_read.clone().filter(|v| c.snapshots.contains_key(v));
            let pick = last.or_else(|| c.order.back().cloned());
            pick.and_then(|v| c.snapshots.get(&v).cloned().map(|s| (v, s)))
        }) else {
            return Ok(None);
        };
        let Some(cmp) = self.compare(&base_v, at)? else { return Ok(None) };
        if cmp.status != "ahead" || cmp.files.len() >= COMPARE_MAX_FILES {
            return Ok(None);
        }
        let Some(tree_sha) = cmp.commits.last().filter(|c| c.sha == at.0).map(|c| c.commit.tree.sha.clone()) else {
            return Ok(None);
        };
        if !valid_oid(&tree_sha) {
            return Ok(None);
        }
        let manifest_changed = cmp.files.iter().any(|f| f.filename == MANIFEST_PATH);
        let Some((files, not_files)) = apply_changed_files(&base, cmp.files) else { return Ok(None) };
        let manifest = if manifest_changed { self.read_manifest(at, files.get(MANIFEST_PATH))? } else { base.manifest.clone() };
        Ok(Some(Snapshot { tree_sha, manifest, files, not_files }))
    }

    /// GitHub's comparison of `base_v` with `at`; None when it has none (e.g. history rewritten).
    fn compare(&self, base_v: &Version, at: &Version) -> Result<Option<Compare>, RemoteError> {
        let what = format!("compare {} with {} in {}", base_v, at, self.name());
        let r = self.send("GET", &format!("{}/compare/{}...{}?per_page=100", self.repo_path(), base_v.0, at.0), None)?;
        if r.status != 200 {
            // 404 (e.g. history rewritten) or anything odd: list the tree instead.
            tracing::debug!("{what}: HTTP {}; listing the whole tree", r.status);
            return Ok(None);
        }
        self.parse(&what, &r).map(Some)
    }
}

/// The base snapshot's files with the compared changes applied; None when a change may have
/// changed a path's kind (then the tree listing decides).
fn apply_changed_files(base: &Snapshot, changed: Vec<CmpFile>) -> Option<Files> {
    let mut files = base.files.clone();
    let mut not_files = base.not_files.clone();
    for f in changed {
        // `compare` does not say what kind of entry a file is. Only a removal, or a change
        // of content ("modified") of a path known as a plain file, keeps its kind; anything
        // else (added, changed type, renamed, copied) may be a symbolic link or a submodule:
        // then the tree listing, which carries modes, decides.
        match f.status.as_str() {
            "removed" => {
                files.remove(&f.filename);
                not_files.remove(&f.filename);
            }
            "modified" if f.previous_filename.is_none() && files.contains_key(&f.filename) => {
                let sha = f.sha.filter(|s| valid_oid(s))?;
                files.insert(f.filename, Some(sha));
            }
            _ => return None,
        }
    }
    Some((files, not_files))
}
