//! The conflict store: where the losing side of every conflict is kept so the person can get it
//! back, and where "ask" conflicts wait for a decision.
//!
//! Layout, one folder per conflict under the store's root (e.g. `<oc-sync data dir>/conflicts`):
//!
//! ```text
//! <root>/<id>/meta.json             the ConflictRecord
//! <root>/<id>/local/<file name>     this machine's copy   (absent if the item was absent/deleted)
//! <root>/<id>/remote/<file name>    the remote's copy     (absent likewise)
//! <root>/<id>/base/<file name>      the last synced copy  (absent if never synced)
//! ```
//!
//! `<file name>` is the last component of the item key (`config/agents/x/y.md` → `y.md`), so the
//! copies open in an editor with the right syntax. Files are 0600 and folders 0700 (Unix): copies
//! may hold secrets. `meta.json` is written last, so a record interrupted half-way has no meta and
//! is ignored by [`ConflictStore::list`].
//!
//! Paths are only ever built from a validated item key ([`crate::remote::validate_key`]) and from
//! generated ids (`<created_ms>-<8 hex>`, checked for that shape before use), never from a record's
//! `dir` field.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::clock::VectorClock;
use crate::config::ConflictStrategy;

const META: &str = "meta.json";
/// The folder names of the kept copies.
const SIDES: [&str; 3] = [CopySide::Local.as_str(), CopySide::Remote.as_str(), CopySide::Base.as_str()];

/// Which side a conflict kept: `"local" | "remote" | "merged" | "none"` (ask: nothing applied yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Winner {
    Local,
    Remote,
    /// A merge of both sides.
    Merged,
    /// Nothing applied: the item waits for the person (strategy "ask").
    None,
}

impl Winner {
    pub const fn as_str(self) -> &'static str {
        match self {
            Winner::Local => "local",
            Winner::Remote => "remote",
            Winner::Merged => "merged",
            Winner::None => "none",
        }
    }
}

impl std::fmt::Display for Winner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the stored spelling, e.g. `winner == "local"`.
impl PartialEq<&str> for Winner {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One of the copies kept for a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopySide {
    /// This machine's copy.
    Local,
    /// The remote's copy.
    Remote,
    /// The last synced copy.
    Base,
}

impl CopySide {
    pub const ALL: [CopySide; 3] = [CopySide::Local, CopySide::Remote, CopySide::Base];

    /// Its folder name in a conflict's folder.
    pub const fn as_str(self) -> &'static str {
        match self {
            CopySide::Local => "local",
            CopySide::Remote => "remote",
            CopySide::Base => "base",
        }
    }

    /// The inverse of [`CopySide::as_str`].
    pub fn parse(s: &str) -> Option<CopySide> {
        CopySide::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for CopySide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One conflict, as stored in `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConflictRecord {
    /// Sortable: `"<created_ms>-<8 hex random>"` (`created_ms` zero-padded to 13 digits).
    pub id: String,
    /// The item key, e.g. `config/opencode.json`.
    pub key: String,
    pub created_ms: u64,
    /// `"auto-merge" | "local-wins" | "remote-wins" | "newest-wins" | "ask"`.
    pub strategy: ConflictStrategy,
    /// `"local" | "remote" | "merged" | "none"` (ask: nothing applied yet).
    pub winner: Winner,
    /// True for "ask": the item is blocked until resolved.
    pub needs_person: bool,
    /// `None` = open; `Some("local" | "remote" | "file")` once resolved.
    #[serde(default)]
    pub resolved: Option<String>,
    #[serde(default)]
    pub local_clock: VectorClock,
    #[serde(default)]
    pub remote_clock: VectorClock,
    #[serde(default)]
    pub local_machine: String,
    #[serde(default)]
    pub remote_machine: String,
    /// One line per conflicting place, e.g. `/model: local "a" vs remote "b"`.
    #[serde(default)]
    pub details: Vec<String>,
    /// The folder holding the copies. Informational: set from the record's actual location when
    /// read back; the store never builds paths from it.
    #[serde(default)]
    pub dir: PathBuf,
}

impl ConflictRecord {
    /// Still waiting (not resolved).
    pub fn is_open(&self) -> bool {
        self.resolved.is_none()
    }
}

/// The fields of a new record that the caller decides (the store adds id, key, time, dir and
/// `resolved: None`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewConflict {
    pub strategy: ConflictStrategy,
    pub winner: Winner,
    pub needs_person: bool,
    pub local_clock: VectorClock,
    pub remote_clock: VectorClock,
    pub local_machine: String,
    pub remote_machine: String,
    pub details: Vec<String>,
}

/// The conflict folders under one root.
#[derive(Debug, Clone)]
pub struct ConflictStore {
    root: PathBuf,
}

impl ConflictStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ConflictStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Saves copies `local`, `remote` (and `base` if any) of the item as files named after the
    /// item (`<root>/<id>/local/opencode.json`, …) plus `meta.json`; all 0600. A `None` side is
    /// simply not written ([`read_copy`](Self::read_copy) then gives `None`).
    pub fn record(
        &self,
        key: &str,
        local: Option<&[u8]>,
        remote: Option<&[u8]>,
        base: Option<&[u8]>,
        meta: NewConflict,
    ) -> io::Result<ConflictRecord> {
        let name = file_name_of(key)?;
        create_private_dir_all(&self.root)?;
        // A fresh folder: retry on the (very unlikely) id collision.
        let (id, created_ms, dir) = loop {
            let created_ms = next_ms();
            let id = format!("{created_ms:013}-{}", random_hex8());
            let dir = self.root.join(&id);
            match fs::create_dir(&dir) {
                Ok(()) => break (id, created_ms, dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        set_dir_private(&dir)?;
        let result = (|| {
            for (side, bytes) in SIDES.into_iter().zip([local, remote, base]) {
                if let Some(bytes) = bytes {
                    let side_dir = dir.join(side);
                    create_private_dir_all(&side_dir)?;
                    crate::fsutil::write_private(&side_dir.join(name), bytes)?;
                }
            }
            let rec = ConflictRecord {
                id: id.clone(),
                key: key.to_string(),
                created_ms,
                strategy: meta.strategy,
                winner: meta.winner,
                needs_person: meta.needs_person,
                resolved: None,
                local_clock: meta.local_clock,
                remote_clock: meta.remote_clock,
                local_machine: meta.local_machine,
                remote_machine: meta.remote_machine,
                details: meta.details,
                dir: dir.clone(),
            };
            write_meta(&dir, &rec)?;
            Ok(rec)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Every record, oldest first (by creation time, then id). A missing root is an empty list; a
    /// folder without `meta.json` (interrupted record) is ignored; a corrupt `meta.json` is skipped
    /// with a warning.
    pub fn list(&self, include_resolved: bool) -> io::Result<Vec<ConflictRecord>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_valid_id(&name) || !entry.file_type()?.is_dir() {
                continue;
            }
            let dir = entry.path();
            let meta_path = dir.join(META);
            let bytes = match fs::read(&meta_path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::debug!(dir = %dir.display(), "conflict folder without meta.json ignored");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(file = %meta_path.display(), "cannot read conflict record, skipped: {e}");
                    continue;
                }
            };
            let mut rec: ConflictRecord = match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(file = %meta_path.display(), "corrupt conflict record skipped: {e}");
                    continue;
                }
            };
            if rec.id != name {
                tracing::warn!(file = %meta_path.display(), id = %rec.id, "conflict record's id does not match its folder, skipped");
                continue;
            }
            if let Err(e) = crate::remote::validate_key(&rec.key) {
                tracing::warn!(file = %meta_path.display(), "conflict record with a bad key skipped: {e}");
                continue;
            }
            if !include_resolved && rec.resolved.is_some() {
                continue;
            }
            rec.dir = dir;
            out.push(rec);
        }
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }

    /// The keys of the open conflicts that wait for the person (strategy "ask"), in `list` order.
    pub fn waiting(&self) -> io::Result<Vec<String>> {
        Ok(self.list(false)?.into_iter().filter(|r| r.needs_person).map(|r| r.key).collect())
    }

    /// The newest open record that needs a person (an "ask" conflict) for `key`.
    pub fn open_for(&self, key: &str) -> io::Result<Option<ConflictRecord>> {
        Ok(self
            .list(false)?
            .into_iter()
            .rev()
            .find(|r| r.key == key && r.needs_person))
    }

    /// Open records whose id or key equals `key_or_id`, oldest first.
    pub fn find(&self, key_or_id: &str) -> io::Result<Vec<ConflictRecord>> {
        Ok(self
            .list(false)?
            .into_iter()
            .filter(|r| r.id == key_or_id || r.key == key_or_id)
            .collect())
    }

    /// The saved copy of one side (`"local" | "remote" | "base"`, see [`CopySide`]); `None` if
    /// that side was not saved (absent at the time).
    pub fn read_copy(&self, rec: &ConflictRecord, side: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(side) = CopySide::parse(side) else {
            return Err(invalid(format!(
                "unknown conflict side {side:?} (expected local, remote or base)"
            )));
        };
        self.read_side(rec, side)
    }

    /// The saved copy of one side; `None` if that side was not saved (absent at the time).
    pub fn read_side(&self, rec: &ConflictRecord, side: CopySide) -> io::Result<Option<Vec<u8>>> {
        let path = self
            .record_dir(rec)?
            .join(side.as_str())
            .join(file_name_of(&rec.key)?);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Marks the record resolved (`how`: `"local" | "remote" | "file"`), rewriting its
    /// `meta.json` atomically. The other fields are taken from the stored meta, not from `rec`.
    pub fn mark_resolved(&self, rec: &ConflictRecord, how: &str) -> io::Result<()> {
        if how.is_empty() {
            return Err(invalid("empty resolution".to_string()));
        }
        let dir = self.record_dir(rec)?;
        let meta_path = dir.join(META);
        let bytes = fs::read(&meta_path)?;
        let mut stored: ConflictRecord = serde_json::from_slice(&bytes).map_err(|e| {
            invalid(format!(
                "conflict record {} is corrupt: {e}",
                meta_path.display()
            ))
        })?;
        stored.resolved = Some(how.to_string());
        stored.dir = dir.clone();
        write_meta(&dir, &stored)
    }

    /// `<root>/<id>` after checking the id's shape (so it cannot climb out of the root).
    fn record_dir(&self, rec: &ConflictRecord) -> io::Result<PathBuf> {
        if !is_valid_id(&rec.id) {
            return Err(invalid(format!("invalid conflict id {:?}", rec.id)));
        }
        Ok(self.root.join(&rec.id))
    }
}

fn write_meta(dir: &Path, rec: &ConflictRecord) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
    bytes.push(b'\n');
    crate::fsutil::write_private(&dir.join(META), &bytes)
}

/// The last component of a validated key.
fn file_name_of(key: &str) -> io::Result<&str> {
    crate::remote::validate_key(key).map_err(invalid)?;
    Ok(key.rsplit('/').next().unwrap_or(key))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `<digits>-<8 lowercase hex>`.
fn is_valid_id(s: &str) -> bool {
    let Some((ms, rnd)) = s.split_once('-') else {
        return false;
    };
    !ms.is_empty()
        && ms.len() <= 20
        && ms.bytes().all(|b| b.is_ascii_digit())
        && rnd.len() == 8
        && rnd.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Milliseconds since the epoch, strictly increasing within this process so that records made in
/// the same millisecond still list in creation order.
fn next_ms() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev.saturating_add(1));
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

fn random_hex8() -> String {
    let mut rnd = [0u8; 4];
    if getrandom::fill(&mut rnd).is_err() {
        // Extremely unlikely; fall back on the clock's nanoseconds (collisions are retried anyway).
        let n = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        rnd = n.to_le_bytes();
    }
    hex::encode(rnd)
}

fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    set_dir_private(dir)
}

#[cfg(unix)]
fn set_dir_private(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn set_dir_private(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(strategy: &str, winner: &str, needs_person: bool) -> NewConflict {
        NewConflict {
            strategy: serde_json::from_value(strategy.into()).unwrap(),
            winner: serde_json::from_value(winner.into()).unwrap(),
            needs_person,
            local_clock: [("laptop".to_string(), 2)].into_iter().collect(),
            remote_clock: [("desktop".to_string(), 1)].into_iter().collect(),
            local_machine: "laptop".into(),
            remote_machine: "desktop".into(),
            details: vec![r#"/model: local "a" vs remote "b""#.into()],
        }
    }

    fn store() -> (tempfile::TempDir, ConflictStore) {
        let tmp = tempfile::tempdir().unwrap();
        let s = ConflictStore::new(tmp.path().join("conflicts"));
        (tmp, s)
    }

    #[test]
    fn round_trip_record_list_find_read_resolve() {
        let (_tmp, s) = store();
        assert!(s.list(true).unwrap().is_empty(), "missing root is empty");
        let key = "config/opencode.json";
        let rec = s
            .record(
                key,
                Some(b"{\"model\":\"a\"}"),
                Some(b"{\"model\":\"b\"}"),
                Some(b"{}"),
                meta("ask", "none", true),
            )
            .unwrap();
        assert!(is_valid_id(&rec.id), "{}", rec.id);
        assert!(rec.id.starts_with(&format!("{:013}-", rec.created_ms)));
        assert_eq!(rec.key, key);
        assert_eq!(rec.resolved, None);
        assert_eq!(rec.dir, s.root().join(&rec.id));
        assert!(rec.dir.join("local/opencode.json").is_file());
        assert!(rec.dir.join("remote/opencode.json").is_file());
        assert!(rec.dir.join("base/opencode.json").is_file());

        assert_eq!(s.list(false).unwrap(), vec![rec.clone()]);
        assert_eq!(s.find(key).unwrap(), vec![rec.clone()]);
        assert_eq!(s.find(&rec.id).unwrap(), vec![rec.clone()]);
        assert!(s.find("config/other.json").unwrap().is_empty());
        assert_eq!(s.open_for(key).unwrap(), Some(rec.clone()));
        assert_eq!(
            s.read_copy(&rec, "local").unwrap().unwrap(),
            b"{\"model\":\"a\"}"
        );
        assert_eq!(
            s.read_copy(&rec, "remote").unwrap().unwrap(),
            b"{\"model\":\"b\"}"
        );
        assert_eq!(s.read_copy(&rec, "base").unwrap().unwrap(), b"{}");
        assert!(s.read_copy(&rec, "other").is_err());
        assert!(s.read_copy(&rec, "../local").is_err());

        s.mark_resolved(&rec, "remote").unwrap();
        assert!(s.list(false).unwrap().is_empty());
        assert!(s.find(key).unwrap().is_empty());
        assert_eq!(s.open_for(key).unwrap(), None);
        let all = s.list(true).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].resolved.as_deref(), Some("remote"));
        assert_eq!(
            ConflictRecord {
                resolved: None,
                ..all[0].clone()
            },
            rec
        );
        // Copies stay readable after resolution.
        assert!(s.read_copy(&all[0], "local").unwrap().is_some());
    }

    #[test]
    fn absent_sides_and_nested_keys() {
        let (_tmp, s) = store();
        let key = "config/agents/x/y.md";
        let rec = s
            .record(
                key,
                None,
                Some(b"# y\n"),
                None,
                meta("remote-wins", "remote", false),
            )
            .unwrap();
        assert_eq!(s.read_copy(&rec, "local").unwrap(), None);
        assert_eq!(s.read_copy(&rec, "base").unwrap(), None);
        assert_eq!(s.read_copy(&rec, "remote").unwrap().unwrap(), b"# y\n");
        assert!(rec.dir.join("remote/y.md").is_file());
        // Empty content is not the same as absent.
        let rec2 = s
            .record(
                key,
                Some(b""),
                Some(b"x"),
                None,
                meta("local-wins", "local", false),
            )
            .unwrap();
        assert_eq!(s.read_copy(&rec2, "local").unwrap(), Some(Vec::new()));
        assert_eq!(s.find(key).unwrap(), vec![rec, rec2]);
        assert_eq!(s.open_for(key).unwrap(), None, "no record needs a person");
    }

    #[test]
    fn bad_keys_are_refused() {
        let (_tmp, s) = store();
        for key in ["../x", "/etc/passwd", "a//b", "", "a\\b", "config/../../x"] {
            assert!(
                s.record(key, Some(b"x"), None, None, meta("ask", "none", true))
                    .is_err(),
                "{key:?}"
            );
        }
        assert!(s.list(true).unwrap().is_empty());
        // A record with a forged id cannot be used to reach outside the store.
        let forged = ConflictRecord {
            id: "../../etc".into(),
            key: "passwd".into(),
            created_ms: 0,
            strategy: ConflictStrategy::Ask,
            winner: Winner::None,
            needs_person: true,
            resolved: None,
            local_clock: VectorClock::new(),
            remote_clock: VectorClock::new(),
            local_machine: String::new(),
            remote_machine: String::new(),
            details: vec![],
            dir: PathBuf::from("/etc"),
        };
        assert!(s.read_copy(&forged, "local").is_err());
        assert!(s.mark_resolved(&forged, "local").is_err());
    }

    #[test]
    fn ordering_oldest_first_and_open_for_newest() {
        let (_tmp, s) = store();
        let mut recs = Vec::new();
        for i in 0..5 {
            let key = if i % 2 == 0 {
                "config/a.json"
            } else {
                "config/b.json"
            };
            recs.push(
                s.record(key, Some(b"l"), Some(b"r"), None, meta("ask", "none", true))
                    .unwrap(),
            );
        }
        let listed = s.list(false).unwrap();
        assert_eq!(listed, recs);
        let ids: Vec<_> = recs.iter().map(|r| r.id.clone()).collect();
        let sorted = {
            let mut v = ids.clone();
            v.sort();
            v
        };
        assert_eq!(ids, sorted, "ids sort in creation order");
        assert_eq!(s.open_for("config/a.json").unwrap().unwrap(), recs[4]);
        assert_eq!(s.open_for("config/b.json").unwrap().unwrap(), recs[3]);
        s.mark_resolved(&recs[4], "file").unwrap();
        assert_eq!(s.open_for("config/a.json").unwrap().unwrap(), recs[2]);
        assert_eq!(
            s.find("config/a.json").unwrap(),
            vec![recs[0].clone(), recs[2].clone()]
        );
    }

    #[test]
    fn corrupt_and_stray_entries_are_skipped() {
        let (_tmp, s) = store();
        let good = s
            .record(
                "config/x.json",
                Some(b"1"),
                Some(b"2"),
                None,
                meta("newest-wins", "remote", false),
            )
            .unwrap();
        let bad = s
            .record(
                "config/y.json",
                Some(b"1"),
                Some(b"2"),
                None,
                meta("ask", "none", true),
            )
            .unwrap();
        fs::write(bad.dir.join(META), b"{ not json").unwrap();
        // Interrupted record (no meta), stray file and folder with a non-id name.
        fs::create_dir_all(s.root().join("0000000000001-deadbeef/local")).unwrap();
        fs::write(s.root().join("README"), b"hi").unwrap();
        fs::create_dir_all(s.root().join("notes")).unwrap();
        // meta whose id does not match its folder.
        let moved = s.root().join("0000000000002-00000000");
        fs::create_dir_all(&moved).unwrap();
        fs::copy(good.dir.join(META), moved.join(META)).unwrap();
        assert_eq!(s.list(true).unwrap(), vec![good]);
        assert!(s.find("config/y.json").unwrap().is_empty());
        assert!(s.mark_resolved(&bad, "local").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn copies_and_meta_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, s) = store();
        let rec = s
            .record(
                "state/auth.json",
                Some(b"secret"),
                Some(b"other"),
                Some(b"base"),
                meta("local-wins", "local", false),
            )
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for side in SIDES {
            assert_eq!(mode(&rec.dir.join(side).join("auth.json")), 0o600, "{side}");
            assert_eq!(mode(&rec.dir.join(side)), 0o700, "{side}");
        }
        assert_eq!(mode(&rec.dir.join(META)), 0o600);
        assert_eq!(mode(&rec.dir), 0o700);
        assert_eq!(mode(s.root()), 0o700);
        s.mark_resolved(&rec, "local").unwrap();
        assert_eq!(mode(&rec.dir.join(META)), 0o600);
    }

    #[test]
    fn meta_json_is_readable_and_tolerant() {
        let (_tmp, s) = store();
        let rec = s
            .record(
                "config/opencode.json",
                Some(b"a"),
                Some(b"b"),
                None,
                meta("auto-merge", "merged", false),
            )
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(rec.dir.join(META)).unwrap()).unwrap();
        assert_eq!(v["strategy"], "auto-merge");
        assert_eq!(v["local_clock"], serde_json::json!({"laptop": 2}));
        // Older/minimal meta (optional fields missing) still loads.
        let dir = s.root().join("0000000000003-0000abcd");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(META),
            br#"{"id":"0000000000003-0000abcd","key":"config/k.json","created_ms":3,"strategy":"ask","winner":"none","needs_person":true}"#,
        )
        .unwrap();
        let listed = s.list(false).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].id, "0000000000003-0000abcd");
        assert_eq!(listed[0].dir, dir);
        assert_eq!(
            s.open_for("config/k.json").unwrap().unwrap().id,
            listed[0].id
        );
    }
}
