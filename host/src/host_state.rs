//! Per-invocation host state: what one guest instance can reach, composed from the
//! capabilities, and the linker that wires them.
//!
//! Every invocation gets a fresh [`Store<HostState>`]. The node links the whole WASI 0.2 set so
//! components from any toolchain instantiate, but grants no capability by default: no
//! preopened folders, no sockets, outgoing HTTP only to granted origins. Environment variables
//! come from the app's `--env` settings only. Adding a capability: a field here, its view
//! function, and one line in [`linker`] (see docs/architecture.md).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::config::{self as app_config, Variables, WasiConfig};
use crate::capabilities::kv::{self, KvCtx, KvView};
use crate::capabilities::messaging::{self, Message, MessagingCtx, MessagingView};
use crate::capabilities::nn::{self, AppModels, NnView};
use crate::capabilities::outbound_http::OutboundHooks;
use crate::guest_logs::{AppLog, RequestTag};
use crate::usage::{AppUsage, InvocationMeter, MemoryBudget, Trigger};

/// The data of one invocation's store.
pub struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHooks,
    /// Enforces the memory limit and measures the invocation's usage.
    meter: InvocationMeter,
    kv: KvCtx,
    models: Option<Arc<AppModels>>,
    /// wasi-nn tensors and contexts this instance holds.
    nn_held: nn::NnHeld,
    config: Variables,
    messaging: MessagingCtx,
    /// When guest code is interrupted; moved on by each request of a reused instance.
    deadline: Instant,
    /// The request its log lines name; moved on by each request of a reused instance.
    request: RequestTag,
}

/// What a store needs from the app it runs: its environment, grants and limits.
pub struct StoreSettings<'a> {
    /// Key-value access (denied unless the app was granted `--kv`).
    pub kv: KvCtx,
    /// The models the app was granted, if any.
    pub models: Option<&'a Arc<AppModels>>,
    /// The app's wasi:config values.
    pub config: &'a Variables,
    /// Where the app may send HTTP requests.
    pub outbound: OutboundHooks,
    /// What the app may publish.
    pub messaging: MessagingCtx,
    pub env: &'a [(String, String)],
    pub memory_bytes: usize,
    /// The node's budget for all guests' memory.
    pub memory_budget: Arc<MemoryBudget>,
    /// When the guest is interrupted if it is still running wasm code.
    pub deadline: Instant,
    /// Where the guest's stdout and stderr lines go, tagged with `request_id`.
    pub logs: &'a Arc<AppLog>,
    pub request_id: Arc<str>,
    /// The app's usage counters (`None`: metering off).
    pub usage: Option<Arc<AppUsage>>,
    /// Counts one invocation of this trigger (`None`: the caller counts them).
    pub trigger: Option<Trigger>,
}

impl HostState {
    /// Creates the store for one invocation, with memory limit and epoch deadline set.
    pub fn new_store(engine: &Engine, settings: StoreSettings<'_>) -> Store<HostState> {
        let request = RequestTag::new(settings.request_id);
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(settings.env)
            .stdout(settings.logs.output(request.clone(), "stdout"))
            .stderr(settings.logs.output(request.clone(), "stderr"));
        let state = HostState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound: settings.outbound,
            meter: InvocationMeter::new(
                settings.memory_bytes,
                settings.memory_budget,
                settings.usage,
                settings.trigger,
            ),
            kv: settings.kv,
            models: settings.models.cloned(),
            nn_held: nn::NnHeld::default(),
            config: settings.config.clone(),
            messaging: settings.messaging,
            deadline: settings.deadline,
            request,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.meter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| Ok(yield_or_interrupt(ctx.data().deadline)));
        store
    }

    /// Moves the time guest code is interrupted at (a new request on a reused instance).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// When guest code is interrupted.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Starts the next request on a reused instance: its deadline, the id its log lines
    /// carry, and a new usage window counting one invocation of `trigger`.
    pub fn begin_request(&mut self, deadline: Instant, request_id: Arc<str>, trigger: Trigger) {
        self.set_deadline(deadline);
        self.tag_request(request_id);
        self.meter.resume(Some(trigger));
    }

    /// Names `request_id` in the instance's log lines from now on.
    pub fn tag_request(&mut self, request_id: Arc<str>) {
        self.request.set(request_id);
    }

    /// Ends a request on an instance that will be kept: closes its usage window, so the
    /// time the instance waits idle is not counted.
    pub fn end_request(&mut self) {
        self.meter.pause();
    }

    /// Takes out of the usage window the time since `at`, when the instance went idle
    /// (a reused WASI 0.3 instance, whose requests are counted by the HTTP trigger).
    pub fn idle_since(&mut self, at: Instant) {
        self.meter.pause_since(at);
    }

    /// Opens the usage window again after [`Self::idle_since`] (a no-op when open).
    pub fn busy_again(&mut self) {
        self.meter.resume(None);
    }

    /// The `wasi:http` view, as a plain function for wasmtime-wasi-http's handler.
    pub fn http_view(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpView::http(self)
    }

    fn nn(&mut self) -> NnView<'_> {
        NnView {
            table: &mut self.table,
            models: self.models.as_ref(),
            inferences: self.meter.usage().map(|u| &u.inferences),
            held: &mut self.nn_held,
        }
    }

    fn kv(&mut self) -> KvView<'_> {
        KvView::new(&mut self.kv, &mut self.table)
    }

    fn config(&mut self) -> WasiConfig<'_> {
        WasiConfig::new(&self.config)
    }

    fn messaging(&mut self) -> MessagingView<'_> {
        MessagingView::new(&self.messaging, &mut self.table)
    }

    /// Puts a delivered message in the store, to pass to the guest's handler.
    pub fn push_message(
        &mut self,
        message: Message,
    ) -> wasmtime::Result<wasmtime::component::Resource<Message>> {
        self.messaging().push(message)
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
            hooks: &mut self.outbound,
        }
    }
}

/// The linker shared by every app: all of WASI 0.2 (capabilities denied by default),
/// `wasi:http`, and each capability (refused at deploy to apps without its grant). Older 0.2.x
/// patch versions resolve against these by semver.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    // WASI 0.3 beside it, with the same capabilities denied by default.
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    kv::add_to_linker(&mut linker, HostState::kv)?;
    nn::add_to_linker(&mut linker, HostState::nn)?;
    app_config::add_to_linker(&mut linker, HostState::config)?;
    messaging::add_to_linker(&mut linker, HostState::messaging)?;
    Ok(linker)
}

/// Lets the store's guest run until `deadline`: at every epoch tick it yields to the executor
/// (so a busy guest shares its worker thread with other requests instead of holding it), and
/// past the deadline it traps with [`wasmtime::Trap::Interrupt`].
pub fn interrupt_at<T: 'static>(store: &mut Store<T>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| Ok(yield_or_interrupt(deadline)));
}

/// At an epoch tick: trap past `deadline`, else yield to the executor.
fn yield_or_interrupt(deadline: Instant) -> wasmtime::UpdateDeadline {
    if Instant::now() >= deadline {
        wasmtime::UpdateDeadline::Interrupt
    } else {
        wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
    }
}
