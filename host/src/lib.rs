//! Edge host: runs WebAssembly components (the `wasi:http/proxy` world) on an edge node.
//!
//! A node keeps deployed apps in a data folder (components, precompiled artifacts, sled
//! metadata), serves HTTP requests by routing each to the app owning the longest matching
//! path prefix, in a fresh instance per request, and exposes an admin API to deploy, list,
//! remove and roll back apps. `edge` is both the node daemon and its client.
//!
//! Modules, from the outside in:
//! - [`cli`] and [`client`]: the command line and the admin API client;
//! - [`daemon`]: `edge serve`, listeners and shutdown;
//! - [`admin`] and [`server`]: the admin API and the data plane;
//! - [`node`]: deploy, remove, rollback and restore, built on [`apps`] (routing table),
//!   [`repository`] (persistence), [`validate`] and [`engine`] (wasmtime);
//! - [`host_state`]: what a guest instance can reach, with [`kv`] (`wasi:keyvalue` on sled)
//!   and [`nn`] (`wasi:nn` on OpenVINO);
//! - [`config`], [`auth`], [`names`], [`error`], [`metrics`]: the supporting pieces.

pub mod admin;
pub mod apps;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod host_state;
pub mod kv;
pub mod metrics;
pub mod names;
pub mod nn;
pub mod node;
pub mod repository;
pub mod server;
pub mod snapshot;
pub mod validate;
