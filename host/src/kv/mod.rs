//! `wasi:keyvalue` for guests, backed by sled: `store`, `atomics` and `batch` in both WIT
//! versions in use (`0.2.0-draft`, as wasmtime and wasmCloud serve it, and `0.2.0-draft2`,
//! as Spin serves it), over one backend, so components written for either run unchanged.
//!
//! Each app sees only its own namespace; an app deployed without `--kv` is refused at deploy
//! and, should a call get through anyway, answered `access-denied`.

mod backend;
mod draft;
mod draft2;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use backend::{Bucket, Durability, KeyPage, KvBackend, KvConfig, KvError};

use crate::host_state::HostState;

/// Interface-name prefix of every key-value import, in both versions.
pub const KV_IMPORT_PREFIX: &str = "wasi:keyvalue/";

/// The key-value context of one store: which app it is and whether it was granted kv.
pub struct KvCtx {
    backend: Arc<KvBackend>,
    app: Option<Arc<str>>,
}

impl KvCtx {
    /// `app` is `None` when the app has no kv grant.
    pub fn new(backend: Arc<KvBackend>, app: Option<Arc<str>>) -> Self {
        Self { backend, app }
    }

    fn open(&self, identifier: &str) -> Result<Bucket, KvError> {
        let app = self.app.as_deref().ok_or(KvError::AccessDenied)?;
        self.backend.bucket(app, identifier)
    }
}

/// What the kv host functions borrow from the store.
pub struct KvView<'a> {
    ctx: &'a mut KvCtx,
    table: &'a mut ResourceTable,
}

impl<'a> KvView<'a> {
    pub fn new(ctx: &'a mut KvCtx, table: &'a mut ResourceTable) -> Self {
        Self { ctx, table }
    }
}

impl KvView<'_> {
    /// The store operations both WIT versions share (see [`KvBackend`]'s checked methods).
    fn ops(&self) -> Arc<KvBackend> {
        self.ctx.backend.clone()
    }
}

/// Marks the `HasData` projection from [`HostState`] to [`KvView`].
struct WasiKeyValue;

impl HasData for WasiKeyValue {
    type Data<'a> = KvView<'a>;
}

/// Adds both versions of `wasi:keyvalue` to the linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    draft::add_to_linker(linker)?;
    draft2::add_to_linker(linker)
}
