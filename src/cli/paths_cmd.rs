//! `oc-sync paths`: every directory and file oc-sync resolved, as OpenCode would.


use super::{Io, EXIT_OK};
use crate::paths::Paths;

pub fn run(paths: &Paths, json: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    if json {
        writeln!(io.out, "{}", serde_json::to_string_pretty(paths)?)?;
        return Ok(EXIT_OK);
    }
    let entries = paths.entries();
    let width = entries.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (label, value) in entries {
        writeln!(io.out, "{label:<width$}  {value}")?;
    }
    Ok(EXIT_OK)
}
