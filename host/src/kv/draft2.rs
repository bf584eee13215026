//! `wasi:keyvalue@0.2.0-draft2` (the version Spin serves), with compare-and-swap.

use wasmtime::component::{Linker, Resource};

use super::{Bucket, KvError, KvView, WasiKeyValue};
use crate::host_state::HostState;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue-0.2.0-draft2",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Draft2Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

/// An open bucket, as a resource of this WIT version.
pub struct Draft2Bucket(Bucket);

/// A compare-and-swap in progress: the value seen when it was created.
pub struct Cas {
    bucket: Bucket,
    key: String,
    seen: Option<Vec<u8>>,
}

fn to_wit(err: KvError) -> store::Error {
    match err {
        KvError::AccessDenied => store::Error::AccessDenied,
        other => store::Error::Other(other.to_string()),
    }
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

/// Runs a write, persists it per the durability mode, and maps the error for the guest.
async fn write_and_persist(
    backend: std::sync::Arc<super::KvBackend>,
    write: impl FnOnce() -> Result<(), KvError>,
) -> KvResult<()> {
    Ok(super::write_and_persist(backend, write)
        .await
        .map_err(to_wit))
}

impl KvView<'_> {
    fn draft2_bucket(&self, bucket: &Resource<Draft2Bucket>) -> wasmtime::Result<Bucket> {
        Ok(self.table.get(bucket)?.0.clone())
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Draft2Bucket>> {
        match self.ctx.open(&identifier) {
            Ok(bucket) => Ok(Ok(self.table.push(Draft2Bucket(bucket))?)),
            Err(err) => Ok(Err(to_wit(err))),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        key: String,
    ) -> KvResult<Option<Vec<u8>>> {
        let bucket = self.draft2_bucket(&bucket)?;
        let result = self
            .ctx
            .backend
            .check_key(&key)
            .and_then(|()| bucket.get(&key));
        Ok(result.map_err(to_wit))
    }

    async fn set(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> KvResult<()> {
        let bucket = self.draft2_bucket(&bucket)?;
        let backend = self.ctx.backend.clone();
        write_and_persist(backend.clone(), || {
            backend.check_key(&key)?;
            backend.check_value(&value)?;
            bucket.set(&key, &value)
        })
        .await
    }

    async fn delete(&mut self, bucket: Resource<Draft2Bucket>, key: String) -> KvResult<()> {
        let bucket = self.draft2_bucket(&bucket)?;
        let backend = self.ctx.backend.clone();
        write_and_persist(backend.clone(), || {
            backend.check_key(&key)?;
            bucket.delete(&key)
        })
        .await
    }

    async fn exists(&mut self, bucket: Resource<Draft2Bucket>, key: String) -> KvResult<bool> {
        let bucket = self.draft2_bucket(&bucket)?;
        let result = self
            .ctx
            .backend
            .check_key(&key)
            .and_then(|()| bucket.exists(&key));
        Ok(result.map_err(to_wit))
    }

    /// This version's cursor is the last key of the previous page.
    async fn list_keys(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        cursor: Option<String>,
    ) -> KvResult<store::KeyResponse> {
        let bucket = self.draft2_bucket(&bucket)?;
        let page_size = self.ctx.backend.config().page_size;
        let page = bucket.list_keys(cursor.as_deref(), page_size);
        Ok(page.map_err(to_wit).map(|page| store::KeyResponse {
            keys: page.keys,
            cursor: page.next_after,
        }))
    }

    async fn drop(&mut self, bucket: Resource<Draft2Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        key: String,
        delta: i64,
    ) -> KvResult<i64> {
        let bucket = self.draft2_bucket(&bucket)?;
        let backend = self.ctx.backend.clone();
        let result = match backend
            .check_key(&key)
            .and_then(|()| bucket.increment(&key, delta))
        {
            Ok(value) => backend.persist().await.map(|()| value),
            Err(err) => Err(err),
        };
        Ok(result.map_err(to_wit))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { bucket, key, seen } = self.table.delete(cas)?;
        let backend = self.ctx.backend.clone();
        if let Err(err) = backend.check_value(&value) {
            return Ok(Err(atomics::CasError::StoreError(to_wit(err))));
        }
        match bucket.compare_and_swap(&key, seen.as_deref(), &value) {
            Ok(Ok(())) => match backend.persist().await {
                Ok(()) => Ok(Ok(())),
                Err(err) => Ok(Err(atomics::CasError::StoreError(to_wit(err)))),
            },
            // Someone else won: hand back a fresh cas holding the value now stored.
            Ok(Err(current)) => {
                let retry = self.table.push(Cas {
                    bucket,
                    key,
                    seen: current,
                })?;
                Ok(Err(atomics::CasError::CasFailed(retry)))
            }
            Err(err) => Ok(Err(atomics::CasError::StoreError(to_wit(err)))),
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        key: String,
    ) -> KvResult<Resource<Cas>> {
        let bucket = self.draft2_bucket(&bucket)?;
        let seen = match self
            .ctx
            .backend
            .check_key(&key)
            .and_then(|()| bucket.get(&key))
        {
            Ok(seen) => seen,
            Err(err) => return Ok(Err(to_wit(err))),
        };
        Ok(Ok(self.table.push(Cas { bucket, key, seen })?))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> KvResult<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        let bucket = self.draft2_bucket(&bucket)?;
        let backend = &self.ctx.backend;
        let result = keys
            .iter()
            .try_for_each(|k| backend.check_key(k))
            .and_then(|()| bucket.get_many(&keys))
            .map(|values| keys.into_iter().zip(values).collect());
        Ok(result.map_err(to_wit))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let bucket = self.draft2_bucket(&bucket)?;
        let backend = self.ctx.backend.clone();
        write_and_persist(backend.clone(), || {
            for (key, value) in &key_values {
                backend.check_key(key)?;
                backend.check_value(value)?;
            }
            bucket.set_many(&key_values)
        })
        .await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        keys: Vec<String>,
    ) -> KvResult<()> {
        let bucket = self.draft2_bucket(&bucket)?;
        let backend = self.ctx.backend.clone();
        write_and_persist(backend.clone(), || {
            keys.iter().try_for_each(|k| backend.check_key(k))?;
            bucket.delete_many(&keys)
        })
        .await
    }
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    store::add_to_linker::<HostState, WasiKeyValue>(linker, HostState::kv)?;
    atomics::add_to_linker::<HostState, WasiKeyValue>(linker, HostState::kv)?;
    batch::add_to_linker::<HostState, WasiKeyValue>(linker, HostState::kv)?;
    Ok(())
}
