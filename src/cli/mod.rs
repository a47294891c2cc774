//! The `oc-sync` command line. Each command lives in its own module; this one parses arguments
//! (clap) and maps outcomes to exit codes: 0 ok, 1 failure, 2 usage error.

mod conflicts_cmd;
mod init;
mod install;
mod login_cmd;
mod opensync_cmd;
mod paths_cmd;
mod progress_view;
mod status_cmd;
mod sync_cmd;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config;
use crate::paths::{EnvSnapshot, Paths};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// `sync`: done, but a conflict waits for the person (strategy "ask"; `oc-sync resolve` settles it).
pub const EXIT_CONFLICTS: i32 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "oc-sync",
    version = crate::VERSION,
    about = "Keep OpenCode's config, state, credentials and sessions in step across your machines.",
    after_help = "Docs: the README of the oc-sync package. Config file: $XDG_CONFIG_HOME/opencode/opencode-sync.json (or $OC_SYNC_CONFIG).",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show config, machine id, remote, plugin registration and last sync.
    Status {
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sync now: push local changes, pull other machines' changes, merge what both changed.
    Sync {
        /// Show what would happen without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Allow a sync that deletes many items (otherwise it stops and asks).
        #[arg(long)]
        allow_deletions: bool,
        /// Only OpenCode's database (sessions), then the OpenSync export when set up: what the
        /// plugin runs in a separate process.
        #[arg(long, hide = true)]
        database_only: bool,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// List conflicts and where the other side of each is kept.
    Conflicts {
        /// Include resolved ones.
        #[arg(long)]
        all: bool,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Settle a conflict: keep this machine's version, the remote's, or a file you prepared.
    Resolve {
        /// The item key (e.g. config/opencode.json) or the conflict id.
        target: String,
        /// Keep this machine's version.
        #[arg(long, group = "choice")]
        local: bool,
        /// Take the other machine's version.
        #[arg(long, group = "choice")]
        remote: bool,
        /// Use the content of this file.
        #[arg(long, group = "choice", value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Re-encrypt the synced credentials with the current passphrase (after changing it; keep the
    /// previous one in oldEncryptionKey until every machine has synced).
    Rekey {
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store a GitHub token for oc-sync (checked against GitHub first; kept only on this machine).
    #[command(long_about = "Store a GitHub token for oc-sync, after checking it against GitHub (GET /user).\n\n\
The token is kept only on this machine, in oc-sync's data dir (github-token.json, readable only by you), and is never synced. \
A token in the config (`token`) or in GITHUB_TOKEN / GH_TOKEN takes precedence over the stored one.\n\n\
Token permissions: a fine-grained personal access token needs \"Contents: Read and write\" and, so that oc-sync can create \
the private repository, \"Administration: Read and write\" (github.com -> Settings -> Developer settings -> Personal access tokens); \
a classic token needs the \"repo\" scope.\n\n\
Without --with-token, oc-sync asks for the token on the terminal (the input is not shown).")]
    Login {
        /// Read the token from standard input (one line), e.g. `oc-sync login --with-token < token.txt`.
        #[arg(long)]
        with_token: bool,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the GitHub token `oc-sync login` stored (tokens in the config or the environment stay).
    Logout {
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export sessions to an OpenSync dashboard (optional): login, status, sync, logout.
    Opensync {
        #[command(subcommand)]
        command: OpensyncCommand,
    },
    /// Show the OpenCode and oc-sync paths resolved on this machine.
    Paths {
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a commented starter config file.
    Init {
        /// Replace an existing config (the old one is kept as a .bak copy).
        #[arg(long)]
        force: bool,
        /// Set `remote`: `github`, a git URL (git@host:owner/repo.git, https://...), the path of a
        /// bare git repository, or a folder.
        #[arg(long)]
        remote: Option<String>,
    },
    /// Register the plugin with OpenCode (for `npm install oc-sync` in OpenCode's config dir).
    Install {
        /// Register a file:// URL to this package instead of the bare name "oc-sync".
        #[arg(long)]
        file_url: bool,
        /// Show what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// The installed oc-sync package folder (set by the npm launcher).
        #[arg(long, env = "OC_SYNC_PACKAGE_DIR", hide_env_values = true)]
        package_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OpensyncCommand {
    /// Connect to an OpenSync deployment: checks /health and that the key is accepted, then stores
    /// URL and key in a file only you can read. Asks for what is missing on a terminal.
    Login {
        /// The deployment URL (a .convex.cloud URL is turned into its .convex.site HTTP URL).
        #[arg(long)]
        url: Option<String>,
        /// The API key (osk_...), from the dashboard's settings.
        #[arg(long)]
        key: Option<String>,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Connection (checked live), masked key, sessions and messages sent, pending, last sync and error.
    Status {
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send new and changed sessions with their messages and parts.
    Sync {
        /// Look at every session, not only those changed since the last export.
        #[arg(long, conflicts_with = "force")]
        all: bool,
        /// Send every session and message again.
        #[arg(long)]
        force: bool,
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the stored OpenSync credentials.
    Logout {
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where a command writes, and the environment it runs in.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub env: EnvSnapshot,
    /// Whether `err` is a terminal (a progress bar is drawn there).
    pub err_terminal: bool,
}

/// A command's failure: `{"ok": false, "error": msg}` on stdout with `--json`, else `msg` on
/// stderr; returns `code`.
fn fail(io: &mut Io<'_>, json: bool, msg: &str, code: i32) -> anyhow::Result<i32> {
    if json {
        writeln!(io.out, "{}", serde_json::json!({ "ok": false, "error": msg }))?;
    } else {
        writeln!(io.err, "{msg}")?;
    }
    Ok(code)
}

/// Runs the CLI with `args` (including the program name) and returns the exit code.
pub fn run<I, T>(args: I, io: &mut Io<'_>) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = write!(io.out, "{text}");
                    EXIT_OK
                }
                _ => {
                    let _ = write!(io.err, "{text}");
                    EXIT_USAGE
                }
            };
        }
    };
    let paths = match Paths::resolve(&io.env) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            return EXIT_FAILURE;
        }
    };
    // Loaded once here for the commands that use it; each decides what a broken config means.
    let load_config = |io: &Io<'_>| config::load(&paths, &io.env, None);
    let result = match cli.command {
        Command::Status { json } => status_cmd::run(&paths, json, io),
        Command::Paths { json } => paths_cmd::run(&paths, json, io),
        Command::Sync { dry_run, allow_deletions, database_only, json } => {
            let scope = if database_only { crate::sync::Scope::Database } else { crate::sync::Scope::All };
            sync_cmd::run(&paths, load_config(io), crate::sync::SyncOptions { dry_run, allow_deletions, reseal: false, scope }, json, io)
        }
        Command::Rekey { json } => {
            sync_cmd::run(&paths, load_config(io), crate::sync::SyncOptions { reseal: true, ..Default::default() }, json, io)
        }
        Command::Conflicts { all, json } => conflicts_cmd::list(&paths, all, json, io),
        Command::Resolve { target, local, remote, file } => conflicts_cmd::resolve(&paths, load_config(io), &target, local, remote, file, io),
        Command::Init { force, remote } => init::run(&paths, force, remote.as_deref(), io),
        Command::Install { file_url, dry_run, package_dir } => install::run(&paths, file_url, dry_run, package_dir, io),
        Command::Login { with_token, json } => login_cmd::login(&paths, load_config(io), with_token, json, io),
        Command::Logout { json } => login_cmd::logout(&paths, load_config(io), json, io),
        Command::Opensync { command } => match command {
            OpensyncCommand::Login { url, key, json } => opensync_cmd::login(&paths, url, key, json, io),
            OpensyncCommand::Status { json } => opensync_cmd::status(&paths, json, io),
            OpensyncCommand::Sync { all, force, json } => opensync_cmd::sync(&paths, all, force, json, io),
            OpensyncCommand::Logout { json } => opensync_cmd::logout(&paths, json, io),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io.err, "error: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// Runs the CLI on the real process environment and standard streams.
pub fn run_process<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut out = std::io::stdout().lock();
    // Not locked: a progress bar draws on stderr from its own thread.
    let mut err = std::io::stderr();
    let err_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut io = Io { out: &mut out, err: &mut err, env: EnvSnapshot::from_process(), err_terminal };
    let code = run(args, &mut io);
    let _ = io.out.flush();
    code
}

#[cfg(test)]
mod tests;
