//! `oc-sync init`: writes a commented starter config (0600, since it may later hold a token).


use anyhow::Context;

use super::{Io, EXIT_FAILURE, EXIT_OK};
use crate::config::schema::starter_config;
use crate::fsutil;
use crate::config::RemoteSetting;
use crate::paths::Paths;

/// The home folder `~/` expands to (the parent of `.config`... as resolved for the config).
fn paths_home(_paths: &Paths) -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(std::path::PathBuf::from)
}

pub fn run(paths: &Paths, force: bool, remote: Option<&str>, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let file = &paths.config_file;
    let setting = match remote.map(|r| crate::config::parse_remote_setting(r, paths_home(paths).as_deref())) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            writeln!(io.err, "--remote: {e}")?;
            return Ok(EXIT_FAILURE);
        }
    };
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
    let text = match remote {
        Some(r) => crate::config::schema::starter_config_with_remote(r.trim()),
        None => starter_config(),
    };
    fsutil::write_private(file, text.as_bytes()).with_context(|| format!("cannot write {}", file.display()))?;
    writeln!(io.out, "Wrote {}", file.display())?;
    match &setting {
        Some(RemoteSetting::Git(url)) => {
            writeln!(io.out, "Remote: git {url}")?;
            writeln!(io.out, "  mirror: {}", paths.git_mirror_dir(url, "main").display())?;
            writeln!(io.out, "  git authenticates with your own SSH keys/agent and credential helpers: check with `git ls-remote {url}`")?;
            if crate::remote::git::GitUrl::parse(url).is_ok_and(|u| u.is_networked()) {
                writeln!(io.out, "  make the repository private: oc-sync cannot check that on a git host")?;
            }
        }
        Some(RemoteSetting::Local(p)) => writeln!(io.out, "Remote: folder {}", p.display())?,
        Some(RemoteSetting::Github) => writeln!(io.out, "Remote: github (a private repository; run `oc-sync login` if no token is set)")?,
        Some(RemoteSetting::Auto) | None => {}
    }
    writeln!(io.out, "Edit it if you like (every key is optional), then run `oc-sync status`.")?;
    Ok(EXIT_OK)
}
