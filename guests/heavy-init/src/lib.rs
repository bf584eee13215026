//! `heavy-init`: an app with an expensive initialisation, to show deploy-time snapshots.
//!
//! Its state is a lookup structure built from scratch: a sieve of Eratosthenes over the first
//! 20 million integers (a 2.4 MiB bitset) with a rank index, answering "how many primes are
//! there up to n, and is n prime" in constant time. Building it takes tens of milliseconds;
//! with a snapshot the node builds it once at deploy and every request starts with it.
//!
//! `GET /heavy-init/primes/{n}` answers `pi(n)=… prime=… init_calls=… state=snapshot|request`:
//! `state` says whether the structure was already in memory when the request started (from
//! the snapshot) or had to be built by this request; `init_calls` counts how often this
//! instance's memory saw the structure being built (1: once, at deploy or in this request).

wit_bindgen::generate!({
    path: "../../wit",
    world: "edge:platform/http-app-snapshot",
    generate_all,
});

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use exports::wasi::http::incoming_handler::Guest as HttpGuest;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const LIMIT: u64 = 20_000_000;

struct Primes {
    /// Bit i set: i is prime.
    bits: Vec<u64>,
    /// Primes below word w's first number.
    rank: Vec<u32>,
}

static PRIMES: OnceLock<Primes> = OnceLock::new();
static INIT_CALLS: AtomicU32 = AtomicU32::new(0);

fn primes() -> &'static Primes {
    PRIMES.get_or_init(|| {
        INIT_CALLS.fetch_add(1, Ordering::SeqCst);
        build()
    })
}

fn build() -> Primes {
    let words = (LIMIT as usize).div_ceil(64);
    let mut bits = vec![u64::MAX; words];
    bits[0] &= !0b11; // 0 and 1 are not prime
    let mut i = 2u64;
    while i * i < LIMIT {
        if bits[(i / 64) as usize] >> (i % 64) & 1 == 1 {
            let mut multiple = i * i;
            while multiple < LIMIT {
                bits[(multiple / 64) as usize] &= !(1 << (multiple % 64));
                multiple += i;
            }
        }
        i += 1;
    }
    let mut rank = Vec::with_capacity(words);
    let mut total = 0u32;
    for word in &bits {
        rank.push(total);
        total += word.count_ones();
    }
    Primes { bits, rank }
}

impl Primes {
    /// Number of primes <= n, and whether n is prime.
    fn lookup(&self, n: u64) -> (u32, bool) {
        let n = n.min(LIMIT - 1);
        let word = (n / 64) as usize;
        let mask = if n % 64 == 63 {
            u64::MAX
        } else {
            (1u64 << (n % 64 + 1)) - 1
        };
        let count = self.rank[word] + (self.bits[word] & mask).count_ones();
        (count, self.bits[word] >> (n % 64) & 1 == 1)
    }
}

struct HeavyInit;

impl Guest for HeavyInit {
    fn wizer_initialize() {
        primes();
    }
}

impl HttpGuest for HeavyInit {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let from_snapshot = PRIMES.get().is_some();
        let path = request.path_with_query().unwrap_or_default();
        let n = path.rsplit('/').next().and_then(|n| n.parse::<u64>().ok());
        let (status, body) = match n {
            Some(n) => {
                let (count, prime) = primes().lookup(n);
                let state = if from_snapshot { "snapshot" } else { "request" };
                let calls = INIT_CALLS.load(Ordering::SeqCst);
                (
                    200,
                    format!("pi({n})={count} prime={prime} init_calls={calls} state={state}\n"),
                )
            }
            None => (400, "use /heavy-init/primes/{n}\n".to_string()),
        };
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(status).expect("valid status");
        let outgoing = response.body().expect("body taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = outgoing.write().expect("stream taken once");
        stream
            .blocking_write_and_flush(body.as_bytes())
            .expect("client reads the body");
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("body complete");
    }
}

export!(HeavyInit);
