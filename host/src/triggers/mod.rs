//! Triggers: what turns an outside event into one invocation of one app version. Each owns its
//! listener (or broker connection), its delivery semantics and its limits, and runs the app in
//! a fresh store built by [`new_store`]. HTTP is the first; messages (MQTT, NATS) the second.

pub mod body_ahead;
pub mod http;
pub mod http_threads;
pub mod instances;
pub mod messaging;
pub mod warm;

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;

use crate::apps::LoadedApp;
use crate::control::node::Node;
use crate::host_state::HostState;
use crate::usage::Trigger;

/// A new request id: 16 hex digits, unique enough to find one invocation's log lines.
pub fn new_request_id() -> Arc<str> {
    Arc::from(format!("{:016x}", rand::random::<u64>()))
}

/// A fresh store for one invocation of `app`, with its grants and limits; the guest is
/// interrupted at `deadline`, its output is logged under `request_id`, and its usage counted
/// (one invocation for `trigger`; none when the caller counts invocations itself).
pub fn new_store(
    node: &Node,
    app: &LoadedApp,
    deadline: Instant,
    request_id: Arc<str>,
    trigger: Option<Trigger>,
) -> Store<HostState> {
    app.new_store(&node.kv, deadline, request_id, trigger, true)
}
