//! `oc-sync conflicts` lists the conflicts (and where their copies are); `oc-sync resolve` settles one.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Io, EXIT_FAILURE, EXIT_OK};
use crate::config::{ConfigError, Loaded};
use crate::paths::Paths;
use crate::clock::VectorClock;
use crate::config::ConflictStrategy;
use crate::sync::conflicts::{ConflictRecord, ConflictStore, Winner};
use crate::sync::resolve::{self as resolving, Resolution};

/// A conflict as `conflicts --json` prints it: the names `sync --json` uses (camelCase); the
/// record's own file (`meta.json`) keeps its format.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConflictJson<'a> {
    id: &'a str,
    key: &'a str,
    created_ms: u64,
    strategy: ConflictStrategy,
    winner: Winner,
    needs_person: bool,
    resolved: Option<&'a str>,
    local_clock: &'a VectorClock,
    remote_clock: &'a VectorClock,
    local_machine: &'a str,
    remote_machine: &'a str,
    details: &'a [String],
    dir: &'a Path,
}

impl<'a> From<&'a ConflictRecord> for ConflictJson<'a> {
    fn from(r: &'a ConflictRecord) -> Self {
        ConflictJson {
            id: &r.id,
            key: &r.key,
            created_ms: r.created_ms,
            strategy: r.strategy,
            winner: r.winner,
            needs_person: r.needs_person,
            resolved: r.resolved.as_deref(),
            local_clock: &r.local_clock,
            remote_clock: &r.remote_clock,
            local_machine: &r.local_machine,
            remote_machine: &r.remote_machine,
            details: &r.details,
            dir: &r.dir,
        }
    }
}

pub fn list(paths: &Paths, all: bool, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let store = ConflictStore::new(paths.conflicts_dir());
    let records = store.list(all)?;
    if json {
        let shown: Vec<ConflictJson<'_>> = records.iter().map(ConflictJson::from).collect();
        writeln!(io.out, "{}", serde_json::to_string_pretty(&shown)?)?;
        return Ok(EXIT_OK);
    }
    if records.is_empty() {
        writeln!(io.out, "{}", if all { "no conflicts recorded" } else { "no open conflicts" })?;
        return Ok(EXIT_OK);
    }
    for r in &records {
        let state = match (&r.resolved, r.needs_person) {
            (Some(how), _) => format!("resolved ({how})"),
            (None, true) => "WAITING FOR YOU".to_string(),
            (None, false) => format!("settled by {} ({} kept)", r.strategy, r.winner),
        };
        writeln!(io.out, "{}  {}  {state}", r.id, r.key)?;
        writeln!(io.out, "    copies: {}", r.dir.display())?;
        for d in r.details.iter().take(3) {
            writeln!(io.out, "    {d}")?;
        }
    }
    writeln!(io.out, "settle one with `oc-sync resolve KEY --local | --remote | --file PATH`")?;
    Ok(EXIT_OK)
}

pub fn resolve(paths: &Paths, loaded: Result<Loaded, ConfigError>, target: &str, local: bool, remote: bool, file: Option<PathBuf>, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let how = match (local, remote, file) {
        (true, false, None) => Resolution::Local,
        (false, true, None) => Resolution::Remote,
        (false, false, Some(f)) => Resolution::File(f),
        _ => {
            writeln!(io.err, "choose exactly one of --local, --remote or --file PATH")?;
            return Ok(super::EXIT_USAGE);
        }
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            writeln!(io.err, "{e}")?;
            return Ok(EXIT_FAILURE);
        }
    };
    match resolving::resolve(paths, &loaded.config, target, &how) {
        Ok(r) => {
            writeln!(io.out, "{} now holds the {} version; run `oc-sync sync` to send it to your other machines", r.key, r.how)?;
            Ok(EXIT_OK)
        }
        Err(e) => {
            writeln!(io.err, "{e}")?;
            Ok(EXIT_FAILURE)
        }
    }
}
