//! The code-layout harness: `cargo bench --bench ring -- interleaved/layout`.
//!
//! Where the compiler happens to place a hot loop relative to 64-byte lines
//! (and the CPU's instruction fetch and micro-op cache windows) moves
//! one-by-one ring throughput from build to build, for the subject and the
//! baseline alike. This part takes that out of a comparison: it runs the
//! producer loop and the consumer loop of each ring (two threads, as the
//! `two threads` rows of `interleaved/one-by-one`) from `#[inline(never)]`
//! functions that begin with `P` and `C` bytes of nops, for `P` and `C` each in
//! 0, 16, 32 and 48: 16 layouts per ring, the same 16 for `SpscRing`,
//! `SpinningSpscRing` and the baseline, rtrb. Every round measures one
//! layout of the subject and the same layout of rtrb, in alternating order,
//! tagged by the vCPU-placement probe; it reports each layout's median ratio
//! and the median over the 16 layouts.
//!
//! The shifts are relative to where each function starts, so they mean one
//! thing only when every function starts on a 64-byte boundary: build with
//! `RUSTFLAGS="-C llvm-args=-align-all-functions=6"` (log2 of 64). The part
//! prints each shifted function's start modulo 64 and warns when they are not
//! all 0. (LLVM aligns loop headers to 16 bytes on x86-64 by default, which is
//! why the shifts are multiples of 16: each lands the loop on another quarter
//! of a line. `-align-loops=64` would undo them.)
//!
//! Not part of a plain `cargo bench --bench ring` run: name it. Rounds per
//! layout: `LAYOUT_ROUNDS` (default 10). `RING_BENCH_VERBOSE=1` prints every
//! round. x86-64 only (the nops are `.nops`).

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shm_typed::{PushError, Region, SpscRing};

use crate::support::{alternate, median, Probe, Rounds, NEAR_NS};

/// Values timed per round (after one untimed lap of the ring).
const ITEMS: u64 = 2_000_000;
/// Ring capacity, and the untimed warm-up: one lap, as in the ring benchmark.
const CAPACITY: u64 = 1 << 16;
const WARM_UP: u64 = CAPACITY;

/// One measured round of one layout: how long `ITEMS` values took, and where
/// the producer and the consumer function start (address modulo 64).
struct Run {
    took: Duration,
    starts: [usize; 2],
}

/// A ring at one layout: producer shift, consumer shift, the round.
type Layout = (usize, usize, fn() -> Run);

/// `N` bytes of nops where this is inlined: everything after it in the
/// function moves `N` bytes further from the function's start.
#[inline(always)]
fn nops<const N: usize>() {
    #[cfg(target_arch = "x86_64")]
    if N > 0 {
        // SAFETY: `.nops` assembles to no-op instructions only: no memory,
        // stack, register or flag is touched.
        unsafe {
            std::arch::asm!(".nops {n}", n = const N, options(nomem, nostack, preserves_flags));
        }
    }
}

/// The producer's loop, `N` bytes into its function: `WARM_UP` values, then
/// (once the consumer has seen them) `ITEMS` timed ones. Returns when the
/// clock started.
#[inline(never)]
fn produce<const N: usize, Push: FnMut(u64) -> Result<(), u64>>(
    push: &mut Push,
    warm: &AtomicBool,
) -> Instant {
    nops::<N>();
    let mut started = Instant::now();
    for value in 0..WARM_UP + ITEMS {
        if value == WARM_UP {
            while !warm.load(Ordering::Acquire) {
                spin_loop();
            }
            started = Instant::now();
        }
        let mut pending = value;
        while let Err(back) = push(pending) {
            pending = back;
            spin_loop();
        }
    }
    started
}

/// The consumer's loop, `N` bytes into its function: per item one pop, one
/// compare and one count, as the sink of the ring benchmark does (reading the
/// value keeps the compiler from dropping the slot load).
#[inline(never)]
fn consume<const N: usize, Pop: FnMut() -> Option<u64>>(pop: &mut Pop, warm: &AtomicBool) {
    nops::<N>();
    let total = WARM_UP + ITEMS;
    let mut received = 0;
    while received < total {
        match pop() {
            Some(u64::MAX) => received = total,
            Some(_) => {
                received += 1;
                if received == WARM_UP {
                    warm.store(true, Ordering::Release);
                }
            }
            None => spin_loop(),
        }
    }
}

/// The start of a function, modulo 64.
fn line_offset(address: usize) -> usize {
    address % 64
}

/// One round between this thread (producer, its loop shifted by `P` bytes)
/// and a consumer thread (shifted by `C`), timed from the first timed push
/// until the consumer has seen the last value.
fn threads<const P: usize, const C: usize, Push, Pop>(push: Push, pop: Pop) -> Run
where
    Push: FnMut(u64) -> Result<(), u64>,
    Pop: FnMut() -> Option<u64> + Send,
{
    /// Each side's state on lines of its own.
    #[repr(align(128))]
    struct Padded<T>(T);
    let starts = [
        line_offset(produce::<P, Push> as fn(&mut Push, &AtomicBool) -> Instant as usize),
        line_offset(consume::<C, Pop> as fn(&mut Pop, &AtomicBool) as usize),
    ];
    let (mut push, pop) = (Padded(push), Padded(pop));
    let warm = AtomicBool::new(false);
    let took = std::thread::scope(|scope| {
        let warm = &warm;
        let consumer = scope.spawn(move || {
            // The whole padded value moves to the consumer thread.
            let mut pop = pop;
            consume::<C, Pop>(&mut pop.0, warm);
        });
        let started = produce::<P, Push>(&mut push.0, warm);
        consumer.join().expect("consumer thread");
        started.elapsed()
    });
    Run { took, starts }
}

/// A heap region for a ring of `CAPACITY` u64 (header, control lines, slots).
fn region() -> Region {
    Region::heap(
        shm_typed::SpscRing::<u64>::segment_len(&shm_typed::Location::Private, CAPACITY)
            .expect("a valid capacity"),
    )
}

/// The subject with blocking calls, `SpscRing`, at one layout.
fn spsc<const P: usize, const C: usize>() -> Run {
    let ring = SpscRing::<u64>::create_in(region(), CAPACITY).expect("ring");
    ring_threads::<P, C, true>(&ring)
}

/// The subject without them, `SpinningSpscRing`, at one layout.
fn spinning<const P: usize, const C: usize>() -> Run {
    let ring = SpscRing::<u64, false>::create_spinning_in(region(), CAPACITY).expect("ring");
    ring_threads::<P, C, false>(&ring)
}

fn ring_threads<const P: usize, const C: usize, const WAKE: bool>(
    ring: &SpscRing<u64, WAKE>,
) -> Run {
    let (mut producer, mut consumer) = (ring.producer().unwrap(), ring.consumer().unwrap());
    threads::<P, C, _, _>(
        move |value| match producer.push(value) {
            Ok(()) => Ok(()),
            Err(PushError::Full(back)) => Err(back),
            Err(other) => panic!("{other}"),
        },
        move || consumer.pop().unwrap(),
    )
}

/// The baseline, rtrb, at one layout.
fn rtrb<const P: usize, const C: usize>() -> Run {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<u64>::new(CAPACITY as usize);
    threads::<P, C, _, _>(
        move |value| {
            producer
                .push(value)
                .map_err(|rtrb::PushError::Full(back)| back)
        },
        move || consumer.pop().ok(),
    )
}

/// The 16 layouts of `$run`: producer and consumer shifts of 0, 16, 32, 48.
macro_rules! layouts {
    ($run:ident) => {
        layouts!(@rows $run; (0, 0) (0, 16) (0, 32) (0, 48) (16, 0) (16, 16) (16, 32) (16, 48)
            (32, 0) (32, 16) (32, 32) (32, 48) (48, 0) (48, 16) (48, 32) (48, 48))
    };
    (@rows $run:ident; $(($p:literal, $c:literal))*) => {
        [$(($p, $c, $run::<$p, $c> as fn() -> Run)),*]
    };
}

/// Rounds per layout.
fn rounds() -> usize {
    std::env::var("LAYOUT_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .filter(|&rounds| rounds > 0)
        .unwrap_or(10)
}

/// The layouts of `subject` against the same layouts of rtrb: per layout the
/// median throughput ratio (subject / rtrb) and each side's near-round rate,
/// then the median over the layouts.
fn compare(probe: &mut Probe, name: &str, subject: &[Layout; 16], baseline: &[Layout; 16]) {
    let rounds = rounds();
    let verbose = std::env::var_os("RING_BENCH_VERBOSE").is_some();
    let mut ratios: Vec<Rounds> = (0..16).map(|_| Rounds::default()).collect();
    let mut near: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); 16];
    let mut starts = std::collections::BTreeSet::new();
    // Layouts in the inner loop, so that drift over the run reaches all alike.
    for round in 0..rounds {
        for (index, (&(p, c, ours), &(_, _, theirs))) in subject.iter().zip(baseline).enumerate() {
            let raw_ns = probe.raw_ns();
            let (mut ours_run, mut theirs_run) = (None, None);
            alternate(
                round + index,
                &mut || {
                    let run = ours();
                    let took = run.took;
                    ours_run = Some(run);
                    took
                },
                &mut || {
                    let run = theirs();
                    let took = run.took;
                    theirs_run = Some(run);
                    took
                },
            );
            let (ours_run, theirs_run) = (ours_run.unwrap(), theirs_run.unwrap());
            starts.extend(ours_run.starts.iter().chain(&theirs_run.starts));
            let ratio = theirs_run.took.as_secs_f64() / ours_run.took.as_secs_f64();
            ratios[index].push(raw_ns, ratio);
            if raw_ns < NEAR_NS {
                let rate = |took: Duration| ITEMS as f64 / took.as_secs_f64() / 1e6;
                let (near_ratios, ours, theirs) = &mut near[index];
                near_ratios.push(ratio);
                ours.push(rate(ours_run.took));
                theirs.push(rate(theirs_run.took));
            }
            if verbose {
                eprintln!(
                    "round {round}, {name} producer +{p} consumer +{c}: raw RTT {raw_ns:.0} ns, \
                     ours {:.2} ms, rtrb {:.2} ms",
                    ours_run.took.as_secs_f64() * 1e3,
                    theirs_run.took.as_secs_f64() * 1e3
                );
            }
        }
    }
    let starts: Vec<String> = starts.iter().map(usize::to_string).collect();
    println!(
        "layout: function starts modulo 64 of every shifted loop: {}",
        starts.join(", ")
    );
    if starts != ["0"] {
        println!(
            "layout: WARNING: not every function starts on a 64-byte boundary, so the shifts \
             are not the layouts they name; build with RUSTFLAGS=\"-C \
             llvm-args=-align-all-functions=6\""
        );
    }
    let mut per_layout_all = Vec::new();
    let mut per_layout_near = Vec::new();
    for (index, &(p, c, _)) in subject.iter().enumerate() {
        let (near_ratios, ours, theirs) = &mut near[index];
        let rates = if near_ratios.is_empty() {
            String::new()
        } else {
            per_layout_near.push(median(near_ratios));
            format!(
                "; near rounds, medians: ours {:.0} M/s, rtrb {:.0} M/s",
                median(ours),
                median(theirs)
            )
        };
        let mut all = ratios[index].values();
        per_layout_all.push(median(&mut all));
        println!(
            "layout: {name} / rtrb, two threads, producer +{p:<2} consumer +{c:<2}: {}{rates}",
            ratios[index].summary("x", 2)
        );
    }
    let over = |values: &mut Vec<f64>| match values.len() {
        0 => "no layout".to_string(),
        count => format!(
            "{:.2}x over {count} layouts, {} of them >= 1.00x",
            median(values),
            values.iter().filter(|&&ratio| ratio >= 1.0).count()
        ),
    };
    println!(
        "layout: {name} / rtrb, median of the per-layout medians: all rounds {}; near rounds {}",
        over(&mut per_layout_all),
        over(&mut per_layout_near)
    );
}

/// The layout part of the interleaved section.
pub fn interleaved_layout(probe: &mut Probe) {
    if cfg!(not(target_arch = "x86_64")) {
        println!("layout: x86-64 only (the shifts are `.nops`); nothing measured");
        return;
    }
    println!(
        "layout: {ITEMS} u64 one by one per round, two threads, {} rounds per layout; ratios are \
         throughput, subject / rtrb at the same layout (> 1: the subject is faster); [near: .., \
         far: ..] split the rounds by the raw RTT probed before each (near < {NEAR_NS} ns)",
        rounds()
    );
    let baseline = layouts!(rtrb);
    compare(probe, "SpscRing", &layouts!(spsc), &baseline);
    compare(probe, "SpinningSpscRing", &layouts!(spinning), &baseline);
}
