//! oc-sync: keeps OpenCode's config, state, credentials and sessions in step across machines.
//!
//! This crate is the whole engine and CLI as a plain Rust library; it knows nothing of Node.
//! The napi bindings (the `napi/` crate) and the JS shim only forward to it.

pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod engine;
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
pub mod scheduler;
pub mod secrets;
pub mod source;
pub mod status;
pub mod sync;
pub mod token_store;
pub mod watch;

#[cfg(test)]
mod testing;

/// This build's version (the npm package and the crate share it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
