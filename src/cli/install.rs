//! `oc-sync install`: makes OpenCode load an npm-installed oc-sync.
//!
//! OpenCode 1.18 loads a bare plugin name ("oc-sync") only from its own package cache
//! (`~/.cache/opencode/packages/oc-sync@latest/node_modules/oc-sync`), never from
//! `~/.config/opencode/node_modules`, and it downloads nothing when that folder already exists.
//! So after `npm install oc-sync` this command (1) links that cache folder to the installed package and
//! (2) adds "oc-sync" to the plugin list of OpenCode's global config. The bare name keeps the synced
//! opencode.json identical on every machine. `--file-url` registers a file:// URL instead (no link).

use std::path::{Path, PathBuf};

use super::{Io, EXIT_FAILURE, EXIT_OK};
use crate::opencode_config::{self, AddOutcome};
use crate::paths::Paths;

pub fn run(paths: &Paths, file_url: bool, dry_run: bool, package_dir: Option<PathBuf>, io: &mut Io<'_>) -> anyhow::Result<i32> {
    let Some(pkg) = package_dir.filter(|p| p.join("package.json").exists()) else {
        writeln!(
            io.err,
            "cannot find the installed oc-sync package: run this through npm's launcher (`npx oc-sync install` in the folder where you ran `npm install oc-sync`), or pass --package-dir"
        )?;
        return Ok(EXIT_FAILURE);
    };
    let pkg = pkg.canonicalize().unwrap_or(pkg);
    let prefix = if dry_run { "would " } else { "" };
    let config_file = opencode_config::global_config_file(&paths.opencode_config);

    let use_url = file_url || !cfg!(unix);
    let spec = if use_url { file_url_of(&pkg) } else { "oc-sync".to_string() };
    if !use_url {
        match link_cache(&paths.opencode_plugin_install, &pkg, dry_run)? {
            Link::Created => writeln!(io.out, "{prefix}link {} -> {}", paths.opencode_plugin_install.display(), pkg.display())?,
            Link::AlreadyOurs => writeln!(io.out, "OpenCode's plugin cache already points at {}", pkg.display())?,
            Link::OpencodeOwn => writeln!(
                io.out,
                "OpenCode already installed its own copy of oc-sync at {}; it will load that one (delete that folder to use {} instead)",
                paths.opencode_plugin_install.display(),
                pkg.display()
            )?,
        }
    }
    match opencode_config::add_plugin_entry(&config_file, &spec, dry_run) {
        Ok(AddOutcome::Added) => writeln!(io.out, "{prefix}add \"{spec}\" to \"plugin\" in {}", config_file.display())?,
        Ok(AddOutcome::AlreadyPresent(existing)) => {
            writeln!(io.out, "{} already lists \"{existing}\" as a plugin", config_file.display())?
        }
        Err(e) => {
            writeln!(io.err, "{e}")?;
            return Ok(EXIT_FAILURE);
        }
    }
    if !dry_run {
        writeln!(io.out, "Done: OpenCode loads oc-sync the next time it starts. Check with `oc-sync status`.")?;
    }
    Ok(EXIT_OK)
}

enum Link {
    Created,
    AlreadyOurs,
    OpencodeOwn,
}

fn link_cache(cache_pkg: &Path, pkg: &Path, dry_run: bool) -> anyhow::Result<Link> {
    if let Ok(meta) = std::fs::symlink_metadata(cache_pkg) {
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(cache_pkg)?;
            if target == pkg || cache_pkg.canonicalize().ok().as_deref() == Some(pkg) {
                return Ok(Link::AlreadyOurs);
            }
            // A stale link of ours (e.g. the package moved): replace it.
            if !dry_run {
                std::fs::remove_file(cache_pkg)?;
            }
        } else {
            return Ok(Link::OpencodeOwn);
        }
    }
    if !dry_run {
        std::fs::create_dir_all(cache_pkg.parent().expect("cache path has a parent"))?;
        #[cfg(unix)]
        std::os::unix::fs::symlink(pkg, cache_pkg)?;
    }
    Ok(Link::Created)
}

fn file_url_of(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    let s = s.replace('%', "%25").replace(' ', "%20");
    if s.starts_with('/') { format!("file://{s}") } else { format!("file:///{s}") }
}
