//! `wasi:keyvalue@0.2.0-draft` (the version wasmtime-wasi-keyvalue 48 vendors).

use wasmtime::component::Resource;

use super::{Bucket, KvError, KvView, WasiKeyValue};

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

/// An open bucket, as a resource of this WIT version, with where its last `list-keys` page
/// ended: (the cursor it returned, the last key listed), so the next page starts there instead
/// of walking the bucket again from the first key.
pub struct DraftBucket(Bucket, Option<(u64, String)>);

impl From<Bucket> for DraftBucket {
    fn from(bucket: Bucket) -> Self {
        Self(bucket, None)
    }
}

super::shared_bindings! {
    bucket = DraftBucket,
    bucket_methods = {
        /// This version's cursor is a number: the count of keys already listed. Paging
        /// through one bucket resource resumes after the previous page's last key; only a
        /// cursor from elsewhere walks the keys before it.
        async fn list_keys(
            &mut self,
            resource: Resource<DraftBucket>,
            cursor: Option<u64>,
        ) -> KvResult<store::KeyResponse> {
            let page_size = self.ctx.backend.config().page_size;
            let skip = cursor.unwrap_or(0);
            let (bucket, resume) = {
                let entry = self.table.get(&resource)?;
                (entry.0.clone(), entry.1.clone())
            };
            let page = match resume {
                Some((at, last)) if skip > 0 && at == skip => bucket
                    .list_keys(Some(&last), page_size)
                    .map(|page| (page.keys, page.next_after.is_some())),
                _ => list_from_offset(
                    &bucket,
                    usize::try_from(skip).unwrap_or(usize::MAX),
                    page_size,
                ),
            };
            let page = page.map(|(keys, more)| {
                let next = more.then(|| skip + keys.len() as u64);
                let resume = next.zip(keys.last().cloned());
                (store::KeyResponse { cursor: next, keys }, resume)
            });
            match page {
                Ok((response, resume)) => {
                    self.table.get_mut(&resource)?.1 = resume;
                    Ok(Ok(response))
                }
                Err(err) => answer(Err(err)),
            }
        }
    },
    batch_methods = {
        async fn get_many(
            &mut self,
            bucket: Resource<DraftBucket>,
            keys: Vec<String>,
        ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
            let bucket = bucket_of(self, &bucket)?;
            answer(self.ops().get_many(&bucket, &keys).map(|values| {
                keys.into_iter()
                    .zip(values)
                    .map(|(k, v)| v.map(|v| (k, v)))
                    .collect()
            }))
        }
    },
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
        let bucket = bucket_of(self, &bucket)?;
        let Ok(delta) = i64::try_from(delta) else {
            return answer(Err(KvError::Overflow(key)));
        };
        let value = self.ops().increment(&bucket, &key, delta).await;
        answer(value.and_then(|v| u64::try_from(v).map_err(|_| KvError::NotANumber(key))))
    }
}
