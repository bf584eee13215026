//! Triggers: what turns an outside event into one invocation of one app version. Each owns its
//! listener (or broker connection), its delivery semantics and its limits, and runs the app in
//! a fresh store built by [`crate::host_state`]. HTTP is the first.

pub mod http;
