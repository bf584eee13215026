//! Control: what changes which apps run. The admin API ([`admin`]) calls the node operations
//! ([`node`]: deploy, remove, rollback, restore), which validate ([`validate`]), compile
//! through the engine's cache, persist ([`repository`]) and swap the routing table, one change
//! at a time. Who may call what is [`tokens`] (named tokens with roles); what was done is
//! [`audit`] (a hash-chained log of every admin action).

pub mod admin;
pub mod audit;
pub mod node;
pub mod repository;
pub mod tokens;
pub mod validate;
