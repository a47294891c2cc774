//! oc-sync keeps OpenCode's config, state, credentials and sessions in step across machines.
//!
//! Everything syncable is an **item**: a key such as `config/opencode.json` or
//! `sessions/<project>/<session>` with its bytes. A [`source::Source`] produces and writes the items
//! of one [`source::Category`] on this machine; a [`remote::Remote`] stores versions of all items
//! (a manifest of entries with vector clocks, see [`clock::VectorClock`]) and moves its head by
//! compare-and-swap. The [`sync::Syncer`] compares the two against the last synced base and pushes,
//! pulls, merges ([`merge`]) or keeps conflicts, and [`sync::sync_now`] runs it for this machine.
//!
//! The layers, each using only those above it:
//!
//! 1. foundations: [`paths`] (and the [`paths::EnvSnapshot`], the only reader of the environment),
//!    [`category`], [`child`], [`config`], [`time`], [`fsutil`], [`jsonc`], [`net`], [`crypto`], [`clock`], [`fault`],
//!    [`logging`], [`machine_id`], [`token_store`];
//! 2. [`merge`] (pure three-way merges by kind) and [`secrets`] (secret values in config files);
//! 3. [`remote`] (folder, GitHub, and any git host through the person's own git) and [`source`] (files and OpenCode's database);
//! 4. [`sync`]: plan, driver, state, conflicts, one sync of this machine;
//! 5. [`autosync`] (the background engine inside OpenCode), [`status`], and the [`opensync`] export;
//! 6. [`cli`], the `oc-sync` command.
//!
//! The napi bindings (the `napi/` crate) and the JS shim sit on top and only forward to
//! [`autosync::engine::Engine`] and [`cli`]; this crate knows nothing of Node.

pub mod autosync;
pub mod category;
pub mod child;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod fault;
pub mod fsutil;
pub mod jsonc;
pub mod logging;
pub mod machine_id;
pub mod merge;
pub mod net;
pub mod opencode_config;
pub mod opensync;
pub mod paths;
pub mod remote;
pub mod secrets;
pub mod source;
pub mod status;
pub mod sync;
pub mod time;
pub mod token_store;

#[cfg(test)]
mod testing;

/// This build's version (the npm package and the crate share it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
