//! The integration tests, all in one test binary (one link of the library and its dependencies
//! instead of one per file): a module per area, so a test's name starts with its module
//! (`cargo test --test it sync_cli::`).

mod common;

mod cli_binary;
mod cli_json;
mod config_secrets;
mod credentials;
mod github_login;
mod git_remote;
mod github_sync;
mod opensync_cli;
mod sync_cli;
mod sync_props;
mod sync_race;
mod upgrade;
