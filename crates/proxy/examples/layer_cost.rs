//! What the queue-proxy layer and the activator add to each request's
//! bookkeeping, in nanoseconds, against the bookkeeping the gateway did
//! before them (an in-flight counter and a request counter on the
//! endpoint), measured in the same run. Run by `bench/queue-proxy/run.sh`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use skiff_proxy::worker::ShardedCounter;
use skiff_proxy::{Backends, Endpoint};

const N: u64 = 2_000_000;

fn per_op(threads: usize, f: impl Fn() + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let f = &f;
            s.spawn(move || {
                skiff_proxy::worker::set_index(t + 1);
                for _ in 0..N {
                    f();
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / (N as f64 * threads as f64)
}

fn main() {
    let backends = Backends::default();
    let b = backends.get("bench/rev");
    b.configure(0, Duration::from_secs(300));
    let ep = Arc::new(Endpoint::new(
        "127.0.0.1:9".parse().unwrap(),
        "bench/rev".into(),
        1,
        false,
    ));
    b.set_endpoints(vec![ep.clone()]);
    // Before: the lease cloned the endpoint, bumped an in-flight counter and
    // a sharded request counter.
    let in_flight = AtomicUsize::new(0);
    let requests = ShardedCounter::default();
    let before = || {
        let e = std::hint::black_box(ep.clone());
        in_flight.fetch_add(1, Ordering::AcqRel);
        requests.inc();
        in_flight.fetch_sub(1, Ordering::Release);
        drop(e);
    };
    let direct = || drop(std::hint::black_box(b.try_slot(false).expect("a slot")));
    let proxied = || drop(std::hint::black_box(b.try_slot(true).expect("a slot")));
    println!("per-request bookkeeping, ns (median of 5)");
    println!(
        "{:<10} {:>10} {:>16} {:>16}",
        "threads", "before", "queue-proxy", "+ activator"
    );
    for threads in [1, 2] {
        let med = |f: &(dyn Fn() + Sync)| {
            let mut v: Vec<f64> = (0..5).map(|_| per_op(threads, f)).collect();
            v.sort_by(f64::total_cmp);
            v[2]
        };
        let (x, y, z) = (med(&before), med(&direct), med(&proxied));
        println!(
            "{threads:<10} {x:>10.1} {:>9.1} (+{:>4.0}) {:>9.1} (+{:>4.0})",
            y,
            y - x,
            z,
            z - x
        );
    }
}
