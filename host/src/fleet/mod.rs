//! Fleets: many nodes driven by desired state in a NATS JetStream key-value bucket, with
//! components pulled from OCI registries by digest. No cluster protocol of our own: JetStream
//! stores, orders, versions (rollback is its history) and fans out the state; nodes never talk
//! to each other.
//!
//! ```text
//! bucket edge-fleet           group.<GROUP>  node.<NODE>   desired apps (JSON, history kept)
//! bucket edge-fleet-status    node.<NODE>                   what the node runs, its errors,
//!                                                           its last heartbeat
//! ```
//! `edge fleet apply FILE.toml` resolves every reference to a digest and writes the groups and
//! nodes the file names ([`control`]); each node with a `[fleet]` section watches its own keys
//! and reconciles through the same [`crate::control::node::Node`] operations as the admin API
//! ([`agent`]), reporting to the status bucket. A node cut from NATS keeps serving what it
//! last deployed (it is all on its disk) and converges when the link returns.

pub mod agent;
pub mod config;
pub mod control;
pub mod desired;
pub mod status;

pub use config::{DESIRED_BUCKET, FleetConfig, STATUS_BUCKET, check_name, group_key, node_key};
