//! Capabilities: the host interfaces a guest can import beyond plain WASI, one folder each.
//!
//! Every capability has the same shape (wasmtime's `crates/wasi-*` pattern):
//! - its **config section** in `node.toml` (how this node provides it), a serde struct;
//! - its **grant** (what `edge deploy` must say for an app to use it), stored in the app's
//!   version record, deny by default;
//! - its **deploy-time check**, over the component's import names and the grant, with an error
//!   that names the missing grant;
//! - its **per-store context** and **view** and an `add_to_linker` generic over the host
//!   state, taking a function from the state to the view.
//!
//! A capability imports nothing of the node (engine, host state, control, node config): the
//! composition happens in [`crate::host_state`] (linker, store), [`crate::config`] (sections),
//! [`crate::control::repository`] (grants) and [`crate::control::validate`] (checks).
//! `docs/architecture.md` has the recipe for adding one.

pub mod config;
pub mod kv;
pub mod messaging;
pub mod nn;
pub mod outbound_http;
