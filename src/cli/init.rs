//! `oc-sync init`: writes a commented starter config (0600, since it may later hold a token).


use anyhow::Context;

use super::{Io, EXIT_FAILURE, EXIT_OK};
use crate::config::schema::starter_config;
use crate::fsutil;
use crate::paths::Paths;

pub fn run(paths: &Paths, force: bool, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let file = &paths.config_file;
    if file.exists() {
        if !force {
            writeln!(
                io.err,
                "{} already exists; edit it, or run `oc-sync init --force` to replace it (the old file is kept as .bak).",
                file.display()
            )?;
            return Ok(EXIT_FAILURE);
        }
        let backup = file.with_extension("json.bak");
        std::fs::copy(file, &backup).with_context(|| format!("cannot back up {} to {}", file.display(), backup.display()))?;
        fsutil::set_private(&backup)?;
        writeln!(io.out, "Kept the old config as {}", backup.display())?;
    }
    fsutil::write_private(file, starter_config().as_bytes()).with_context(|| format!("cannot write {}", file.display()))?;
    writeln!(io.out, "Wrote {}", file.display())?;
    writeln!(io.out, "Edit it if you like (every key is optional), then run `oc-sync status`.")?;
    Ok(EXIT_OK)
}
