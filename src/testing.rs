//! Helpers shared by the crate's own test modules (simulated machines that sync in-process).
//! The integration tests in tests/ have their own, in tests/it/common/.

use std::path::{Path, PathBuf};

/// What changed in a home directory (shared with the integration tests).
#[path = "../tests/it/common/home_snapshot.rs"]
pub mod home_snapshot;

use crate::config::Config;
use crate::remote::Remote;
use crate::source::{Category, FileSource, Source};
use crate::sync::Syncer;
use crate::time::now_ms as system_now_ms;
use crate::sync::state::StateStore;

/// A `Syncer` for `machine` with nothing blocked, the system clock and no observers or codec.
pub(crate) fn syncer<'a>(
    machine: &str,
    config: &'a Config,
    remote: &'a dyn Remote,
    sources: Vec<Box<dyn Source + 'a>>,
    state_dir: PathBuf,
) -> Syncer<'a> {
    Syncer {
        machine: machine.into(),
        config,
        remote,
        sources,
        state: StateStore::new(state_dir),
        blocked: Default::default(),
        now_ms: system_now_ms,
        on_local_write: None,
        codec: None,
        on_progress: None,
        progress: None,
    }
}

/// A simulated machine: `<dir>/<name>` with `config/` and `state/` (synced as OpenCode's config
/// and state folders) and `sync/` (oc-sync's sync state).
pub(crate) struct Machine {
    pub root: PathBuf,
}

impl Machine {
    pub fn new(dir: &Path, name: &str) -> Machine {
        let root = dir.join(name);
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::create_dir_all(root.join("state")).unwrap();
        Machine { root }
    }
    /// Writes `text` to `rel` (under the machine's root: "config/...", "state/...").
    pub fn put(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    pub fn get(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel)).ok()
    }
    pub fn syncer<'a>(&self, name: &str, config: &'a Config, remote: &'a dyn Remote) -> Syncer<'a> {
        let sources: Vec<Box<dyn Source>> = vec![
            Box::new(FileSource::new(Category::Config, self.root.join("config"), Default::default()).unwrap()),
            Box::new(FileSource::new(Category::State, self.root.join("state"), Default::default()).unwrap()),
        ];
        syncer(name, config, remote, sources, self.root.join("sync"))
    }
}

/// The tests' config: no wait between retries.
pub(crate) fn config() -> Config {
    Config { retry_delay_ms: 0, ..Config::default() }
}
