//! `wasi:keyvalue` for guests, backed by sled: `store`, `atomics` and `batch` in both WIT
//! versions in use (`0.2.0-draft`, as wasmtime and wasmCloud serve it, and `0.2.0-draft2`,
//! as Spin serves it), over one backend, so components written for either run unchanged.
//!
//! Each app sees only its own namespace; an app deployed without `--kv` is refused at deploy
//! and, should a call get through anyway, answered `access-denied`.
//!
//! Capability shape: config section [`KvConfig`] (`[kv]`), grant `--kv` ([`check_imports`]),
//! per-store [`KvCtx`] and [`KvView`], [`add_to_linker`].

mod backend;
mod draft;
mod draft2;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use backend::{AppStorage, Bucket, Durability, KeyPage, KvBackend, KvConfig, KvError, KvQuota};

use crate::error::DeployError;

/// Interface-name prefix of every key-value import, in both versions.
pub const KV_IMPORT_PREFIX: &str = "wasi:keyvalue/";

/// Refuses a component that imports `wasi:keyvalue` when the app has no `--kv` grant.
pub fn check_imports(imports: &[String], granted: bool) -> Result<(), DeployError> {
    match imports.iter().find(|i| i.starts_with(KV_IMPORT_PREFIX)) {
        Some(import) if !granted => Err(DeployError::MissingGrant(format!(
            "the component imports `{import}` but was deployed without a key-value grant; \
             redeploy with --kv to give it its own key-value namespace"
        ))),
        _ => Ok(()),
    }
}

/// The namespace of an app granted kv, with what it may keep there.
#[derive(Debug, Clone)]
pub struct KvNamespace {
    pub app: Arc<str>,
    pub quota: KvQuota,
}

/// The key-value context of one store: which app it is and whether it was granted kv.
pub struct KvCtx {
    backend: Arc<KvBackend>,
    namespace: Option<KvNamespace>,
}

impl KvCtx {
    /// `namespace` is `None` when the app has no kv grant.
    pub fn new(backend: Arc<KvBackend>, namespace: Option<KvNamespace>) -> Self {
        Self { backend, namespace }
    }

    fn open(&self, identifier: &str) -> Result<Bucket, KvError> {
        let namespace = self.namespace.as_ref().ok_or(KvError::AccessDenied)?;
        self.backend
            .bucket(&namespace.app, identifier, namespace.quota)
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

/// Marks the `HasData` projection from the host state to [`KvView`].
struct WasiKeyValue;

impl HasData for WasiKeyValue {
    type Data<'a> = KvView<'a>;
}

/// Adds both versions of `wasi:keyvalue` to the linker; `view` borrows the kv state of a store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> anyhow::Result<()> {
    draft::add_to_linker(linker, view)?;
    draft2::add_to_linker(linker, view)
}

/// What both WIT versions' bindings say the same way: the error mapping, opening a bucket, the
/// single-key operations of `store.bucket`, and `set-many`/`delete-many`. Expanded inside each
/// version's module (where its `store`, `batch` and `atomics` are in scope) for its bucket
/// resource type; the version's own `bucket` methods (`list-keys`, whose cursor differs) and
/// `batch` methods (`get-many`, whose result differs) are passed in.
macro_rules! shared_bindings {
    (
        bucket = $bucket:ident,
        bucket_methods = { $($bucket_methods:tt)* },
        batch_methods = { $($batch_methods:tt)* } $(,)?
    ) => {
        fn to_wit(err: KvError) -> store::Error {
            match err {
                KvError::AccessDenied => store::Error::AccessDenied,
                other => store::Error::Other(other.to_string()),
            }
        }

        type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

        fn answer<T>(result: Result<T, KvError>) -> KvResult<T> {
            Ok(result.map_err(to_wit))
        }

        /// The open bucket behind a resource of this version.
        fn bucket_of(
            view: &KvView<'_>,
            bucket: &wasmtime::component::Resource<$bucket>,
        ) -> wasmtime::Result<Bucket> {
            Ok(view.table.get(bucket)?.0.clone())
        }

        impl store::Host for KvView<'_> {
            async fn open(
                &mut self,
                identifier: String,
            ) -> KvResult<wasmtime::component::Resource<$bucket>> {
                match self.ctx.open(&identifier) {
                    Ok(bucket) => Ok(Ok(self.table.push(<$bucket>::from(bucket))?)),
                    Err(err) => answer(Err(err)),
                }
            }
        }

        impl store::HostBucket for KvView<'_> {
            async fn get(
                &mut self,
                bucket: wasmtime::component::Resource<$bucket>,
                key: String,
            ) -> KvResult<Option<Vec<u8>>> {
                let bucket = bucket_of(self, &bucket)?;
                answer(self.ops().get(&bucket, &key))
            }

            async fn set(
                &mut self,
                bucket: wasmtime::component::Resource<$bucket>,
                key: String,
                value: Vec<u8>,
            ) -> KvResult<()> {
                let bucket = bucket_of(self, &bucket)?;
                answer(self.ops().set(&bucket, &key, &value).await)
            }

            async fn delete(
                &mut self,
                bucket: wasmtime::component::Resource<$bucket>,
                key: String,
            ) -> KvResult<()> {
                let bucket = bucket_of(self, &bucket)?;
                answer(self.ops().delete(&bucket, &key).await)
            }

            async fn exists(
                &mut self,
                bucket: wasmtime::component::Resource<$bucket>,
                key: String,
            ) -> KvResult<bool> {
                let bucket = bucket_of(self, &bucket)?;
                answer(self.ops().exists(&bucket, &key))
            }

            async fn drop(
                &mut self,
                bucket: wasmtime::component::Resource<$bucket>,
            ) -> wasmtime::Result<()> {
                self.table.delete(bucket)?;
                Ok(())
            }

            $($bucket_methods)*
        }

        impl batch::Host for KvView<'_> {
            async fn set_many(
                &mut self,
                bucket: wasmtime::component::Resource<$bucket>,
                key_values: Vec<(String, Vec<u8>)>,
            ) -> KvResult<()> {
                let bucket = bucket_of(self, &bucket)?;
                answer(self.ops().set_many(&bucket, &key_values).await)
            }

            async fn delete_many(
                &mut self,
                bucket: wasmtime::component::Resource<$bucket>,
                keys: Vec<String>,
            ) -> KvResult<()> {
                let bucket = bucket_of(self, &bucket)?;
                answer(self.ops().delete_many(&bucket, &keys).await)
            }

            $($batch_methods)*
        }

        pub fn add_to_linker<T: Send + 'static>(
            linker: &mut wasmtime::component::Linker<T>,
            view: fn(&mut T) -> KvView<'_>,
        ) -> anyhow::Result<()> {
            store::add_to_linker::<T, WasiKeyValue>(linker, view)?;
            atomics::add_to_linker::<T, WasiKeyValue>(linker, view)?;
            batch::add_to_linker::<T, WasiKeyValue>(linker, view)?;
            Ok(())
        }
    };
}
use shared_bindings;
