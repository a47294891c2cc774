//! Reading a new head cheaply: GitHub's `compare/{old}...{new}` names the files that changed
//! between the commit the tree index describes and the new head (with their new blob ids and the
//! new tree id), so only those files are read.

use serde::Deserialize;

use super::{COMPARE_MAX_FILES, GithubRemote, valid_oid};
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

/// One change between two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Changed {
    Removed(String),
    /// The path now holds this blob id (added, modified, changed type, renamed to, copied to).
    Set(String, String),
}

/// What changed from one commit to a descendant.
pub(super) struct Delta {
    pub tree_sha: String,
    pub changes: Vec<Changed>,
}

impl GithubRemote {
    /// The files changed from `base` to its descendant `at` (one request). None when GitHub's
    /// answer cannot be used: `at` is not ahead of `base`, the listing may be incomplete (300
    /// files), or it lacks what is needed; the caller then lists the tree.
    pub(super) fn compare(&self, base: &Version, at: &Version) -> Result<Option<Delta>, RemoteError> {
        let what = format!("compare {base} with {at} in {}", self.name());
        let r = self.send("GET", &format!("{}/compare/{}...{}?per_page=100", self.repo_path(), base.0, at.0), None)?;
        if r.status != 200 {
            // 404 (e.g. history rewritten) or anything odd: list the tree instead.
            tracing::debug!("{what}: HTTP {}; listing the whole tree", r.status);
            return Ok(None);
        }
        let cmp: Compare = self.parse(&what, &r)?;
        if cmp.status != "ahead" || cmp.files.len() >= COMPARE_MAX_FILES {
            return Ok(None);
        }
        let Some(tree_sha) = cmp.commits.last().filter(|c| c.sha == at.0).map(|c| c.commit.tree.sha.clone()) else {
            return Ok(None);
        };
        if !valid_oid(&tree_sha) {
            return Ok(None);
        }
        let mut changes = Vec::with_capacity(cmp.files.len());
        for f in cmp.files {
            if f.status == "removed" {
                changes.push(Changed::Removed(f.filename));
                continue;
            }
            if f.status == "renamed"
                && let Some(old) = f.previous_filename
            {
                changes.push(Changed::Removed(old));
            }
            match f.sha.filter(|s| valid_oid(s)) {
                Some(sha) => changes.push(Changed::Set(f.filename, sha)),
                None => return Ok(None),
            }
        }
        Ok(Some(Delta { tree_sha, changes }))
    }
}
