//! `wasi:keyvalue@0.2.0-draft` (the version wasmtime-wasi-keyvalue 48 vendors).

use wasmtime::component::{Linker, Resource};

use super::{Bucket, KvError, KvView, WasiKeyValue};
use crate::host_state::HostState;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue-0.2.0-draft",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::DraftBucket,
        },
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

/// An open bucket, as a resource of this WIT version.
pub struct DraftBucket(Bucket);

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

impl KvView<'_> {
    fn draft_bucket(&self, bucket: &Resource<DraftBucket>) -> wasmtime::Result<Bucket> {
        Ok(self.table.get(bucket)?.0.clone())
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<DraftBucket>> {
        match self.ctx.open(&identifier) {
            Ok(bucket) => Ok(Ok(self.table.push(DraftBucket(bucket))?)),
            Err(err) => answer(Err(err)),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<DraftBucket>,
        key: String,
    ) -> KvResult<Option<Vec<u8>>> {
        let bucket = self.draft_bucket(&bucket)?;
        answer(self.ops().get(&bucket, &key))
    }

    async fn set(
        &mut self,
        bucket: Resource<DraftBucket>,
        key: String,
        value: Vec<u8>,
    ) -> KvResult<()> {
        let bucket = self.draft_bucket(&bucket)?;
        answer(self.ops().set(&bucket, &key, &value).await)
    }

    async fn delete(&mut self, bucket: Resource<DraftBucket>, key: String) -> KvResult<()> {
        let bucket = self.draft_bucket(&bucket)?;
        answer(self.ops().delete(&bucket, &key).await)
    }

    async fn exists(&mut self, bucket: Resource<DraftBucket>, key: String) -> KvResult<bool> {
        let bucket = self.draft_bucket(&bucket)?;
        answer(self.ops().exists(&bucket, &key))
    }

    /// This version's cursor is a number: the count of keys already listed.
    async fn list_keys(
        &mut self,
        bucket: Resource<DraftBucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let bucket = self.draft_bucket(&bucket)?;
        let page_size = self.ctx.backend.config().page_size;
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        answer(
            list_from_offset(&bucket, skip, page_size).map(|(keys, more)| store::KeyResponse {
                cursor: more.then(|| (skip + keys.len()) as u64),
                keys,
            }),
        )
    }

    async fn drop(&mut self, bucket: Resource<DraftBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

/// One page of keys starting at position `skip`, and whether more follow.
fn list_from_offset(
    bucket: &Bucket,
    skip: usize,
    page_size: usize,
) -> Result<(Vec<String>, bool), KvError> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    let mut skipped = 0;
    // Walk pages until the offset is reached; offsets are small in practice.
    loop {
        let page = bucket.list_keys(after.as_deref(), page_size)?;
        for key in page.keys {
            if skipped < skip {
                skipped += 1;
            } else if keys.len() < page_size {
                keys.push(key);
            } else {
                return Ok((keys, true));
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok((keys, false)),
        }
    }
}

impl atomics::Host for KvView<'_> {
    /// This version counts in `u64`; values are stored as decimal text.
    async fn increment(
        &mut self,
        bucket: Resource<DraftBucket>,
        key: String,
        delta: u64,
    ) -> KvResult<u64> {
        let bucket = self.draft_bucket(&bucket)?;
        let Ok(delta) = i64::try_from(delta) else {
            return answer(Err(KvError::Overflow(key)));
        };
        let value = self.ops().increment(&bucket, &key, delta).await;
        answer(value.and_then(|v| u64::try_from(v).map_err(|_| KvError::NotANumber(key))))
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<DraftBucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let bucket = self.draft_bucket(&bucket)?;
        answer(self.ops().get_many(&bucket, &keys).map(|values| {
            keys.into_iter()
                .zip(values)
                .map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        }))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<DraftBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let bucket = self.draft_bucket(&bucket)?;
        answer(self.ops().set_many(&bucket, &key_values).await)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<DraftBucket>,
        keys: Vec<String>,
    ) -> KvResult<()> {
        let bucket = self.draft_bucket(&bucket)?;
        answer(self.ops().delete_many(&bucket, &keys).await)
    }
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    store::add_to_linker::<HostState, WasiKeyValue>(linker, HostState::kv)?;
    atomics::add_to_linker::<HostState, WasiKeyValue>(linker, HostState::kv)?;
    batch::add_to_linker::<HostState, WasiKeyValue>(linker, HostState::kv)?;
    Ok(())
}
