//! Edge host: runs WebAssembly components on an edge node.
//!
//! A node keeps deployed apps in a data folder (components, precompiled artifacts, sled
//! metadata), runs an app when an event arrives for it (an HTTP request routed by path prefix,
//! or a message on a topic it subscribed to) in a fresh instance, and exposes an admin API to deploy, list, remove and roll back apps.
//! `edge` is both the node daemon and its client. `docs/architecture.md` draws the request and
//! deploy paths and says where a change goes.
//!
//! Areas, from the outside in:
//! - [`triggers`]: what turns an outside event into one invocation (HTTP, MQTT and NATS
//!   messages);
//! - [`control`]: what changes which apps run: the admin API, node operations (deploy, remove,
//!   rollback, restore), validation and the persistent repository;
//! - [`engine`]: the wasmtime engine, compilation and its artifact cache, snapshots;
//! - [`host_state`]: what one guest instance can reach, composed from the [`capabilities`]
//!   (kv, nn, config, outbound HTTP, messaging), each a leaf with its own config section, grant,
//!   deploy-time check and linker hookup;
//! - [`apps`]: the live routing table of loaded app versions;
//! - [`cli`], [`client`] and [`api`]: the command line, the admin API client and the wire
//!   types they share with the admin API;
//! - [`oci`] and [`fleet`]: components in OCI registries, and many nodes driven by desired
//!   state in NATS JetStream;
//! - [`usage`] and [`guest_logs`]: what each invocation consumed and what it printed;
//! - [`daemon`], [`config`], [`auth`], [`names`], [`error`], [`metrics`], [`group_commit`],
//!   [`disk`], [`connections`], [`secret`], [`heap`], [`relocations`]:
//!   the supporting pieces.

pub mod api;
pub mod apps;
pub mod auth;
pub mod capabilities;
pub mod cli;
pub mod client;
pub mod config;
pub mod connections;
pub mod control;
pub mod daemon;
pub mod disk;
pub mod engine;
pub mod error;
pub mod fleet;
pub mod group_commit;
pub mod guest_logs;
pub mod heap;
pub mod host_state;
pub mod lateness;
pub mod metrics;
pub mod names;
pub mod oci;
pub mod prices;
pub mod relocations;
pub mod secret;
pub mod tls;
pub mod triggers;
pub mod usage;
