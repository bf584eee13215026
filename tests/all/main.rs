//! Integration tests: the real `edge` binary on loopback, real guest components built from
//! `guests/`, real HTTP. Shared helpers live in `harness`.

mod allocator;
mod architecture;
mod bad_input;
mod brokers;
mod clients;
mod deploy;
mod durability;
mod fleet;
mod guest_limits;
mod harness;
mod instances;
mod kv;
mod messaging;
mod metrics;
mod nn;
mod outbound;
mod platform;
mod restart;
mod robustness;
mod snapshot;
mod tiers;
