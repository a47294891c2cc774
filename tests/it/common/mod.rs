//! Helpers shared by the integration tests that drive the `oc-sync` binary on simulated machines.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// What one run of the binary printed.
pub struct Out {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Out {
    pub fn from_output(o: std::process::Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub fn all(&self) -> String {
        format!("{}\n{}", self.out, self.err)
    }
}

/// The synced files of a machine: its OpenCode config and state folders (as `config/...`,
/// `state/...`), oc-sync's own config files left out.
pub fn synced_files(cfg_dir: &Path, state_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (tag, root) in [("config", cfg_dir), ("state", state_dir)] {
        walk(root, tag, &mut out);
    }
    out.remove("config/opencode-sync.json");
    out.remove("config/opencode-sync.overrides.jsonc");
    out
}

pub fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd {
        let e = e.unwrap();
        let r = format!("{rel}/{}", e.file_name().to_string_lossy());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            walk(&e.path(), &r, out);
        } else if ft.is_file() {
            out.insert(r, std::fs::read(e.path()).unwrap());
        } else {
            out.insert(r, b"<symlink>".to_vec());
        }
    }
}

pub mod home_snapshot;
mod machine;
#[allow(unused_imports)]
pub use machine::{Machine, OC};

/// Every path into the `oc_sync` library that the integration tests use, in one place: when a
/// library module moves, only these lines change.
#[allow(unused_imports)]
pub mod lib {
    pub use oc_sync::clock::VectorClock;
    pub use oc_sync::config::{Config, ConflictStrategy};
    pub use oc_sync::jsonc;
    pub use oc_sync::remote::testing::HookedRemote;
    pub use oc_sync::remote::{Changes, Entry, LocalRemote, Remote, sha256_hex};
    pub use oc_sync::source::opencode_db::{create_test_db, insert_fake_session};
    pub use oc_sync::source::{Category, FileSource, Source};
    pub use oc_sync::fault;
    pub use oc_sync::sync::{SyncError, SyncOptions, SyncReport, Syncer};
    pub use oc_sync::time::now_ms as system_now_ms;
    pub use oc_sync::sync::state::StateStore;
}

/// Waits until an `oc-sync` started with `OC_SYNC_TEST_PAUSE_AT=<step>` and
/// `OC_SYNC_TEST_PAUSE_MARK=<mark>` reaches the step (the mark file appears), then kills it with
/// SIGKILL. Panics if the process ends first or never gets there within 60 s.
pub fn kill_at_pause_mark(mut child: std::process::Child, mark: &Path, step: &str) {
    let started = std::time::Instant::now();
    while !mark.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("oc-sync finished ({status}) without reaching step {step}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "oc-sync never reached step {step}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}
