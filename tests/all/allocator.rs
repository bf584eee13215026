//! The instance allocator: pooling by default, on-demand when the pool cannot be reserved.

use crate::harness::{TestHost, get, guest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_uses_the_pooling_allocator_by_default() {
    let host = TestHost::start();
    assert!(host.wait_for_log("allocator=Pooling"), "{}", host.log());
}

/// With the address space capped (as on small 32-bit-VA boards or under `ulimit -v`), the
/// pool's reservation fails: the node must say so and still serve with on-demand allocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_falls_back_to_on_demand_when_the_pool_cannot_be_reserved() {
    let data = tempfile::tempdir().expect("temp dir");
    let host = TestHost::start_wrapped(data.path(), "ulimit -v 16777216;");
    assert!(
        host.wait_for_log("falling back to on-demand"),
        "{}",
        host.log()
    );
    assert!(host.wait_for_log("allocator=OnDemand"), "{}", host.log());
    host.deploy("hello", &guest("hello"), &[]);
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 200);
}
