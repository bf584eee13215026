//! `wasi:keyvalue@0.2.0-draft2` (the version Spin serves), with compare-and-swap.

use wasmtime::component::Resource;

use super::{Bucket, KvError, KvView, WasiKeyValue};

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

impl From<Bucket> for Draft2Bucket {
    fn from(bucket: Bucket) -> Self {
        Self(bucket)
    }
}

/// A compare-and-swap in progress: the value seen when it was created.
pub struct Cas {
    bucket: Bucket,
    key: String,
    seen: Option<Vec<u8>>,
}

super::shared_bindings! {
    bucket = Draft2Bucket,
    bucket_methods = {
        /// This version's cursor is the last key of the previous page.
        async fn list_keys(
            &mut self,
            bucket: Resource<Draft2Bucket>,
            cursor: Option<String>,
        ) -> KvResult<store::KeyResponse> {
            let bucket = bucket_of(self, &bucket)?;
            let page_size = self.ctx.backend.config().page_size;
            answer(
                bucket
                    .list_keys(cursor.as_deref(), page_size)
                    .map(|page| store::KeyResponse {
                        keys: page.keys,
                        cursor: page.next_after,
                    }),
            )
        }
    },
    batch_methods = {
        async fn get_many(
            &mut self,
            bucket: Resource<Draft2Bucket>,
            keys: Vec<String>,
        ) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
            let bucket = bucket_of(self, &bucket)?;
            answer(
                self.ops()
                    .get_many(&bucket, &keys)
                    .map(|values| keys.into_iter().zip(values).collect()),
            )
        }
    },
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        key: String,
        delta: i64,
    ) -> KvResult<i64> {
        let bucket = bucket_of(self, &bucket)?;
        answer(self.ops().increment(&bucket, &key, delta).await)
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { bucket, key, seen } = self.table.delete(cas)?;
        let backend = self.ops();
        let store_error = |err| Ok(Err(atomics::CasError::StoreError(to_wit(err))));
        if let Err(err) = backend.check_value(&value) {
            return store_error(err);
        }
        match bucket.compare_and_swap(&key, seen.as_deref(), &value) {
            Ok(Ok(())) => match backend.persist().await {
                Ok(()) => Ok(Ok(())),
                Err(err) => store_error(err),
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
            Err(err) => store_error(err),
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Draft2Bucket>,
        key: String,
    ) -> KvResult<Resource<Cas>> {
        let bucket = bucket_of(self, &bucket)?;
        match self.ops().get(&bucket, &key) {
            Ok(seen) => Ok(Ok(self.table.push(Cas { bucket, key, seen })?)),
            Err(err) => answer(Err(err)),
        }
    }

    async fn current(&mut self, cas: Resource<Cas>) -> KvResult<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}
