//! Optional export of sessions to an OpenSync dashboard (tokens, cost, messages and parts).

pub mod client;
pub mod credentials;
pub mod export;
pub mod payload;
pub mod state;
