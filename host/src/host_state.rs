//! Per-request host state: what one guest instance can reach, and the linker that wires it.
//!
//! Every request gets a fresh [`Store<HostState>`]. The node links the whole WASI 0.2 set so
//! components from any toolchain instantiate, but grants no capability by default: no
//! preopened folders, no sockets, no outgoing HTTP. Environment variables come from the app's
//! `--env` settings only.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::kv::{KvCtx, KvView};
use crate::nn::{AppModels, NnView};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// The data of one request's store.
pub struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: DenyOutgoingHttp,
    limits: StoreLimits,
    kv: KvCtx,
    models: Option<Arc<AppModels>>,
}

/// What a store needs from the app it runs: its environment, grants and limits.
pub struct StoreSettings<'a> {
    /// Key-value access (denied unless the app was granted `--kv`).
    pub kv: KvCtx,
    /// The models the app was granted, if any.
    pub models: Option<&'a Arc<AppModels>>,
    pub env: &'a [(String, String)],
    pub memory_bytes: usize,
    /// When the guest is interrupted if it is still running wasm code.
    pub deadline: Instant,
}

impl HostState {
    /// Creates the store for one request, with memory limit and epoch deadline set.
    pub fn new_store(engine: &Engine, settings: StoreSettings<'_>) -> Store<HostState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(settings.env).inherit_stdout().inherit_stderr();
        let state = HostState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: DenyOutgoingHttp,
            limits: StoreLimitsBuilder::new()
                .memory_size(settings.memory_bytes)
                .instances(64)
                .build(),
            kv: settings.kv,
            models: settings.models.cloned(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        crate::engine::interrupt_at(&mut store, settings.deadline);
        store
    }
}

impl HostState {
    /// The `wasi:nn` view of this store.
    fn nn(&mut self) -> NnView<'_> {
        NnView {
            table: &mut self.table,
            models: self.models.as_ref(),
        }
    }

    /// The key-value view of this store.
    pub fn kv(&mut self) -> KvView<'_> {
        KvView::new(&mut self.kv, &mut self.table)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outgoing HTTP is a capability no app has been granted yet: every request is denied, which
/// the guest sees as `error-code::http-request-denied`.
struct DenyOutgoingHttp;

impl WasiHttpHooks for DenyOutgoingHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The linker shared by every app: all of WASI 0.2 (capabilities denied by default),
/// `wasi:http`, `wasi:keyvalue` and `wasi:nn` (refused at deploy to apps without the grant). Older 0.2.x patch versions resolve against these by semver.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::kv::add_to_linker(&mut linker)?;
    crate::nn::add_to_linker(&mut linker, HostState::nn)?;
    Ok(linker)
}
