//! Control: what changes which apps run. The admin API ([`admin`]) calls the node operations
//! ([`node`]: deploy, remove, rollback, restore), which validate ([`validate`]), compile
//! through the engine's cache, persist ([`repository`]) and swap the routing table, one change
//! at a time.

pub mod admin;
pub mod node;
pub mod repository;
pub mod validate;
