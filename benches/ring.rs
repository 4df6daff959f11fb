//! `SpscRing` with its peer in another process, against what it competes with.
//!
//! - `round_trip`: one value there and back. SPSC rings spinning, against the
//!   raw floor: two atomics in a shared segment, ping-pong, peer in another
//!   process. Blocking rings (futex sleep), against pipes and Unix sockets.
//! - `throughput_one_by_one`: u64 pushed and popped one at a time, against
//!   `rtrb` with both sides in one process.
//! - `throughput_batch`: `push_slice`/`pop_into` in chunks of 4096.
//! - `MpmcRing` one-by-one throughput (one producer, one consumer process),
//!   against crossbeam's `ArrayQueue` with two threads.
//!
//! After the criterion groups, an interleaved section (`cargo bench --bench ring
//! -- interleaved` runs it alone; `interleaved/<part>` one of its parts:
//! spinning, lines, blocking, wake-ups, one-by-one, mpmc, batch) measures subject and
//! baseline alternately for several rounds and prints the median ratio: this
//! VM's two vCPUs sit near or far apart as the host decides, and that can change
//! between two criterion groups, but hardly within one round.
//! `RING_BENCH_VERBOSE=1` prints each blocking round (ring and pipe round trip,
//! and whether the two processes ended it on one CPU).
//!
//! `interleaved/layout` (only when named) is the code-layout harness: the
//! rings' one-by-one loops shifted by 0/16/32/48 bytes against rtrb's, see
//! `layout/mod.rs` and docs/benchmarks.md for the build flags it wants.

use std::hint::spin_loop;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shm_typed::{Consumer, Location, MpmcRing, Producer, PushError, SpscRing};

mod layout;
#[path = "../tests/support/lines.rs"]
mod lines;
#[path = "../tests/support/race.rs"]
mod race;
mod support;

use race::SleepRacer;
use support::{alternate, median, scaled, Peer, Probe, RawPingPong, Rounds, CLOSE_NS, NEAR_NS};

/// A ring in a private segment, removed at once: it lives while mapped (Linux
/// still lets the peer attach it by id), so nothing is left behind even if the
/// benchmark panics.
fn ring(capacity: u64) -> (SpscRing<u64>, i32) {
    let ring = SpscRing::<u64>::create(Location::Private, capacity).expect("ring");
    let id = removed_id(&ring);
    (ring, id)
}

/// Removes a private ring's segment (it lives while mapped) and returns its id.
fn removed_id<const WAKE: bool>(ring: &SpscRing<u64, WAKE>) -> i32 {
    ring.remove().expect("remove");
    let Location::Id(id) = *ring.location() else {
        unreachable!()
    };
    id
}

/// A bare ping-pong in one of the [`lines::Mode`]s, with its echo peer.
struct LinePingPong {
    mode: lines::Mode,
    forward: lines::Lane,
    backward: lines::Lane,
    counter: u64,
    peer: Peer,
    _mapping: shm_sys::Mapping,
}

impl LinePingPong {
    fn new(mode: lines::Mode) -> LinePingPong {
        let segment = shm_sys::sysv::Segment::create_private(lines::SEGMENT_LEN).expect("segment");
        let mapping = segment.attach().expect("attach");
        segment.remove().expect("remove (freed when both detach)");
        let base = mapping.as_mut_ptr().expect("writable");
        // SAFETY: a live, page-aligned, writable mapping of SEGMENT_LEN bytes,
        // kept in the struct for as long as the lanes; both processes access
        // it only atomically.
        let (forward, backward) =
            unsafe { (lines::Lane::new(base, true), lines::Lane::new(base, false)) };
        let mut peer = Peer::start(
            &["lines-echo", &segment.id().to_string(), mode.name()],
            None,
        );
        peer.expect_ready();
        LinePingPong {
            mode,
            forward,
            backward,
            counter: 0,
            peer,
            _mapping: mapping,
        }
    }

    fn round_trips(&mut self, iters: u64) -> Duration {
        let started = Instant::now();
        for _ in 0..iters {
            self.counter += 1;
            let i = self.counter;
            self.forward.send(self.mode, i, i);
            let got = loop {
                if let Some(got) = self.backward.try_receive(self.mode, i) {
                    break got;
                }
                spin_loop();
            };
            assert_eq!(got, i);
        }
        started.elapsed()
    }
}

impl Drop for LinePingPong {
    fn drop(&mut self) {
        self.peer.set_running(true);
        self.forward.stop();
    }
}

/// Two rings and an echoing peer.
struct RingPingPong {
    there: &'static SpscRing<u64>,
    back: &'static SpscRing<u64>,
    producer: Producer<'static, u64>,
    consumer: Consumer<'static, u64>,
    peer: Peer,
    blocking: bool,
}

impl RingPingPong {
    fn new(blocking: bool) -> RingPingPong {
        let (there, there_id) = ring(64);
        let (back, back_id) = ring(64);
        let (there, back): (&'static SpscRing<u64>, &'static SpscRing<u64>) =
            (Box::leak(Box::new(there)), Box::leak(Box::new(back)));
        let mode = if blocking { "blocking" } else { "spin" };
        let mut peer = Peer::start(
            &[
                "spsc-echo",
                &there_id.to_string(),
                &back_id.to_string(),
                "64",
                mode,
            ],
            None,
        );
        peer.expect_ready();
        RingPingPong {
            there,
            back,
            producer: there.producer().unwrap(),
            consumer: back.consumer().unwrap(),
            peer,
            blocking,
        }
    }

    /// Blocking round trips, each pushed as the peer starts to sleep (see
    /// `SleepRacer`). Returns each round trip's time.
    fn late_round_trips(&mut self, iters: u64) -> Vec<Duration> {
        let mut racer = SleepRacer::new();
        (0..iters)
            .map(|value| {
                racer.pause();
                let started = Instant::now();
                self.producer
                    .push_blocking(value, Duration::from_secs(10))
                    .unwrap();
                let got = self.consumer.pop_blocking(Duration::from_secs(10)).unwrap();
                assert_eq!(got, Some(value));
                started.elapsed()
            })
            .collect()
    }

    fn round_trips(&mut self, iters: u64) -> Duration {
        let started = Instant::now();
        for value in 0..iters {
            if self.blocking {
                self.producer
                    .push_blocking(value, Duration::from_secs(10))
                    .unwrap();
                let got = self.consumer.pop_blocking(Duration::from_secs(10)).unwrap();
                assert_eq!(got, Some(value));
            } else {
                let mut pending = value;
                while let Err(PushError::Full(back)) = self.producer.push(pending) {
                    pending = back;
                }
                loop {
                    if let Some(got) = self.consumer.pop().unwrap() {
                        assert_eq!(got, value);
                        break;
                    }
                    spin_loop();
                }
            }
        }
        started.elapsed()
    }
}

impl Drop for RingPingPong {
    fn drop(&mut self) {
        let _ = self.producer.push(u64::MAX);
        let _ = (self.there, self.back); // leaked for 'static handles; the process ends soon
    }
}

/// 8-byte messages to an echoing peer over a stream (pipe or Unix socket).
struct StreamPingPong {
    writer: Box<dyn Write>,
    reader: Box<dyn Read>,
    peer: Peer,
}

impl StreamPingPong {
    fn pipe() -> StreamPingPong {
        let mut peer = Peer::start(&["stream-echo"], None);
        let writer = Box::new(peer.stdin.take().unwrap());
        // Nothing was read yet, so the BufReader holds no buffered bytes.
        let reader = Box::new(peer.stdout.take().unwrap().into_inner());
        StreamPingPong {
            writer,
            reader,
            peer,
        }
    }

    fn unix_socket() -> StreamPingPong {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let theirs = OwnedFd::from(theirs);
        let peer = Peer::start(&["stream-echo", "3"], Some(&theirs));
        drop(theirs);
        let reader = ours.try_clone().unwrap();
        StreamPingPong {
            writer: Box::new(ours),
            reader: Box::new(reader),
            peer,
        }
    }

    fn round_trips(&mut self, iters: u64) -> Duration {
        let mut message = [0u8; 8];
        let started = Instant::now();
        for value in 0..iters {
            self.writer.write_all(&value.to_ne_bytes()).unwrap();
            self.writer.flush().unwrap();
            self.reader.read_exact(&mut message).unwrap();
        }
        started.elapsed()
    }
}

/// The two rings of a [`RingSink`]: data there (a spinning ring when `WAKE`
/// is false), counts back (one capacity: the peer opens both with it).
struct SinkRings<const WAKE: bool = true> {
    data: (SpscRing<u64, WAKE>, i32),
    counts: (SpscRing<u64>, i32),
}

impl SinkRings {
    fn new() -> SinkRings {
        SinkRings {
            data: ring(1 << 16),
            counts: ring(1 << 16),
        }
    }
}

impl SinkRings<false> {
    fn spinning() -> SinkRings<false> {
        let data =
            SpscRing::<u64, false>::create_spinning(Location::Private, 1 << 16).expect("ring");
        let id = removed_id(&data);
        SinkRings {
            data: (data, id),
            counts: ring(1 << 16),
        }
    }
}

/// A ring to a counting peer; it answers each u64::MAX with the count so far.
struct RingSink<'a, const WAKE: bool = true> {
    producer: Producer<'a, u64, WAKE>,
    counts: Consumer<'a, u64>,
    peer: Peer,
    batch: Vec<u64>,
}

impl<'a, const WAKE: bool> RingSink<'a, WAKE> {
    fn new(rings: &'a SinkRings<WAKE>, batch: bool) -> RingSink<'a, WAKE> {
        let mode = match (batch, WAKE) {
            (true, _) => "batch",
            (false, true) => "single",
            (false, false) => "spinning",
        };
        let mut peer = Peer::start(
            &[
                "spsc-sink",
                &rings.data.1.to_string(),
                &rings.counts.1.to_string(),
                "65536",
                mode,
            ],
            None,
        );
        peer.expect_ready();
        RingSink {
            producer: rings.data.0.producer().unwrap(),
            counts: rings.counts.0.consumer().unwrap(),
            peer,
            batch: (0..4096).collect(),
        }
    }

    fn push_one_by_one(&mut self, count: u64) -> Duration {
        let started = Instant::now();
        for value in 0..count {
            let mut pending = value;
            while let Err(PushError::Full(back)) = self.producer.push(pending) {
                pending = back;
                spin_loop();
            }
        }
        self.finish(count, started)
    }

    /// `count` values in slices of 4096, with `push_slice` or (`streaming`)
    /// `push_slice_streaming`.
    fn push_batches(&mut self, count: u64, streaming: bool) -> Duration {
        let started = Instant::now();
        let mut sent = 0u64;
        while sent < count {
            let len = (count - sent).min(4096) as usize;
            let values = &self.batch[..len];
            sent += if streaming {
                self.producer.push_slice_streaming(values)
            } else {
                self.producer.push_slice(values)
            }
            .unwrap() as u64;
        }
        self.finish(count, started)
    }

    fn finish(&mut self, count: u64, started: Instant) -> Duration {
        // Spinning: a spinning ring has no blocking calls, and the peer spins.
        while let Err(PushError::Full(_)) = self.producer.push(u64::MAX) {
            spin_loop();
        }
        let counted = self.counts.pop_blocking(Duration::from_secs(60)).unwrap();
        let took = started.elapsed();
        assert_eq!(counted, Some(count), "the peer received every item");
        took
    }
}

/// Values pushed before the clock starts in every one-by-one throughput
/// measurement: one lap of the 65536-slot rings, so that every slot page is
/// mapped and touched on both sides before timing (rtrb's buffer comes from
/// malloc, which hands back the previous round's pages already mapped; a fresh
/// segment's pages fault on first touch).
const WARM_UP: u64 = 1 << 16;

/// One-by-one throughput between this thread and a consumer thread: `WARM_UP`
/// values untimed, then `count` values timed, from the first push until the
/// consumer has seen the last. `push` hands a value back when the queue is
/// full. The consumer does per item what the peer process's sink does: one
/// pop, one compare (with the end marker u64::MAX, never sent here), one
/// count. Reading the value matters: a consumer that drops it lets the compiler
/// drop the slot load, and then the slot lines never travel to its cache (so
/// it did in rtrb's consumer loop: checked in the machine code). `push` and `pop` should
/// own their handles: each is kept on cache lines of its own, and `pop` moves
/// to the consumer thread (a consumer handle left on this thread's stack next
/// to the producer's shares a cache line with it: that made rtrb 3-7x slower).
fn threads_one_by_one(
    count: u64,
    push: impl FnMut(u64) -> Result<(), u64>,
    pop: impl FnMut() -> Option<u64> + Send,
) -> Duration {
    /// Each side's state (the handle its closure owns) on lines of its own.
    #[repr(align(128))]
    struct Padded<T>(T);
    let (mut push, mut pop) = (Padded(push), Padded(pop));
    let warm = std::sync::atomic::AtomicBool::new(false);
    let total = WARM_UP + count;
    // One loop per side, with a single call of `push` or `pop`: called from
    // two places, our pop closure was not inlined (rtrb's was), which cost
    // ours a call and its state in memory on every item.
    std::thread::scope(|scope| {
        let warm = &warm;
        // `pop` moves to the consumer thread: the consumer's state must not
        // share a cache line with the producer's on this thread's stack.
        let consumer = scope.spawn(move || {
            let mut received = 0;
            while received < total {
                match (pop.0)() {
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
        });
        let mut started = Instant::now();
        for value in 0..total {
            if value == WARM_UP {
                while !warm.load(Ordering::Acquire) {
                    spin_loop();
                }
                started = Instant::now();
            }
            let mut pending = value;
            while let Err(back) = (push.0)(pending) {
                pending = back;
                spin_loop();
            }
        }
        consumer.join().unwrap();
        started.elapsed()
    })
}

/// The bytes a heap region needs for a ring of `capacity` u64 (header,
/// control lines, slots and the schema block).
fn heap_ring_len(capacity: u64) -> usize {
    SpscRing::<u64>::segment_len(&Location::Private, capacity).expect("a valid capacity")
}

/// SpscRing with producer and consumer threads in this process (heap region).
fn spsc_threads_one_by_one(count: u64) -> Duration {
    let region = shm_typed::Region::heap(heap_ring_len(1 << 16));
    threads_one_by_one_through(&SpscRing::<u64>::create_in(region, 1 << 16).unwrap(), count)
}

/// A spinning SpscRing with producer and consumer threads in this process.
fn spinning_threads_one_by_one(count: u64) -> Duration {
    let region = shm_typed::Region::heap(heap_ring_len(1 << 16));
    let ring = SpscRing::<u64, false>::create_spinning_in(region, 1 << 16).unwrap();
    threads_one_by_one_through(&ring, count)
}

fn threads_one_by_one_through<const WAKE: bool>(
    ring: &SpscRing<u64, WAKE>,
    count: u64,
) -> Duration {
    let (mut producer, mut consumer) = (ring.producer().unwrap(), ring.consumer().unwrap());
    threads_one_by_one(
        count,
        move |value| match producer.push(value) {
            Ok(()) => Ok(()),
            Err(PushError::Full(back)) => Err(back),
            Err(other) => panic!("{other}"),
        },
        move || consumer.pop().unwrap(),
    )
}

/// An MpmcRing to a counting peer process (used with one producer and one
/// consumer, the only split two vCPUs measure without thrashing).
struct MpmcSink {
    data: MpmcRing<u64>,
    counts: MpmcRing<u64>,
    peer: Peer,
}

impl MpmcSink {
    fn new() -> MpmcSink {
        let make = || {
            let ring = MpmcRing::<u64>::create(Location::Private, 1 << 16).expect("ring");
            ring.remove().expect("remove");
            let Location::Id(id) = *ring.location() else {
                unreachable!()
            };
            (ring, id)
        };
        let ((data, data_id), (counts, counts_id)) = (make(), make());
        let mut peer = Peer::start(
            &[
                "mpmc-sink",
                &data_id.to_string(),
                &counts_id.to_string(),
                "65536",
            ],
            None,
        );
        peer.expect_ready();
        MpmcSink { data, counts, peer }
    }

    fn push_one_by_one(&mut self, count: u64) -> Duration {
        let started = Instant::now();
        for value in 0..count {
            let mut pending = value;
            while let Err(PushError::Full(back)) = self.data.push(pending) {
                pending = back;
                spin_loop();
            }
        }
        self.data
            .push_blocking(u64::MAX, Duration::from_secs(60))
            .unwrap();
        let counted = self.counts.pop_blocking(Duration::from_secs(60)).unwrap();
        let took = started.elapsed();
        assert_eq!(counted, Some(count), "the peer received every item");
        took
    }
}

/// crossbeam's ArrayQueue with a producer and a consumer thread in this process.
fn array_queue_one_by_one(count: u64) -> Duration {
    let queue = crossbeam_queue::ArrayQueue::<u64>::new(1 << 16);
    threads_one_by_one(count, |value| queue.push(value), || queue.pop())
}

/// rtrb with producer and consumer threads in this process.
fn rtrb_one_by_one(count: u64) -> Duration {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<u64>::new(1 << 16);
    threads_one_by_one(
        count,
        move |value| {
            producer
                .push(value)
                .map_err(|rtrb::PushError::Full(back)| back)
        },
        move || consumer.pop().ok(),
    )
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    let mut raw = RawPingPong::new();
    group.bench_function("raw atomic ping-pong, two processes", |b| {
        b.iter_custom(|iters| raw.round_trips(iters))
    });
    drop(raw);
    let mut spin = RingPingPong::new(false);
    group.bench_function("SpscRing spinning, two processes", |b| {
        b.iter_custom(|iters| spin.round_trips(iters))
    });
    drop(spin);
    let mut blocking = RingPingPong::new(true);
    group.bench_function("SpscRing blocking, two processes", |b| {
        b.iter_custom(|iters| blocking.round_trips(iters))
    });
    drop(blocking);
    let mut pipe = StreamPingPong::pipe();
    group.bench_function("pipe, two processes", |b| {
        b.iter_custom(|iters| pipe.round_trips(iters))
    });
    drop(pipe);
    let mut socket = StreamPingPong::unix_socket();
    group.bench_function("Unix socket, two processes", |b| {
        b.iter_custom(|iters| socket.round_trips(iters))
    });
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("throughput_one_by_one");
    group.throughput(Throughput::Elements(1));
    let single_rings = SinkRings::new();
    let mut single = RingSink::new(&single_rings, false);
    group.bench_function("SpscRing u64, two processes", |b| {
        b.iter_custom(|iters| single.push_one_by_one(iters))
    });
    drop(single);
    group.bench_function("rtrb u64, two threads", |b| b.iter_custom(rtrb_one_by_one));
    group.bench_function("SpscRing u64, two threads", |b| {
        b.iter_custom(spsc_threads_one_by_one)
    });
    let spinning_rings = SinkRings::spinning();
    let mut spinning = RingSink::new(&spinning_rings, false);
    group.bench_function("spinning SpscRing u64, two processes", |b| {
        b.iter_custom(|iters| spinning.push_one_by_one(iters))
    });
    drop(spinning);
    group.bench_function("spinning SpscRing u64, two threads", |b| {
        b.iter_custom(spinning_threads_one_by_one)
    });

    let mut mpmc = MpmcSink::new();
    group.bench_function("MpmcRing u64, two processes", |b| {
        b.iter_custom(|iters| mpmc.push_one_by_one(iters))
    });
    drop(mpmc);
    group.bench_function("crossbeam ArrayQueue u64, two threads", |b| {
        b.iter_custom(array_queue_one_by_one)
    });
    group.finish();

    let mut group = c.benchmark_group("throughput_batch");
    group.throughput(Throughput::Elements(1));
    let batch_rings = SinkRings::new();
    let mut batch = RingSink::new(&batch_rings, true);
    group.bench_function(
        "SpscRing u64 push_slice/pop_into 4096, two processes",
        |b| b.iter_custom(|iters| batch.push_batches(iters, false)),
    );
    group.bench_function(
        "SpscRing u64 push_slice_streaming/pop_into 4096, two processes",
        |b| b.iter_custom(|iters| batch.push_batches(iters, true)),
    );
    group.finish();
}

/// Rounds of each interleaved measure (a tenth under `SHM_BENCH_SMOKE`).
fn rounds() -> usize {
    scaled(20)
}

/// Rounds of each one-by-one throughput comparison: a round takes only tens of
/// ms, and these ratios swing most with the placement, so more rounds are
/// needed for each placement's median to settle.
fn throughput_rounds() -> usize {
    scaled(60)
}

/// The per-round ratios of a throughput comparison, and each side's rate.
struct Throughputs {
    ratios: Rounds,
    /// Items per second of the subject and of the baseline in the rounds of
    /// near placement.
    near_rates: (Vec<f64>, Vec<f64>),
}

impl Throughputs {
    /// The ratios' summary, then each side's median rate over the near
    /// rounds: a ratio far from the usual can then be told apart as the
    /// subject's doing or the baseline's (where the compiler places either
    /// hot loop moves its rate by 15% from build to build).
    fn summary(&mut self, baseline: &str) -> String {
        let ratios = self.ratios.summary("x", 2);
        if self.near_rates.0.is_empty() {
            return ratios;
        }
        format!(
            "{ratios} (near rounds, medians: ours {:.0} M/s, {baseline} {:.0} M/s)",
            median(&mut self.near_rates.0) / 1e6,
            median(&mut self.near_rates.1) / 1e6
        )
    }
}

/// [`throughput_rounds`] rounds of `subject` and `baseline` (each timing the
/// same number of `items`) in alternating order, each round tagged by a
/// placement probe; records the subject's throughput relative to the
/// baseline's (baseline time / subject time).
fn throughput_ratios(
    probe: &mut Probe,
    items: u64,
    subject: &mut dyn FnMut() -> Duration,
    baseline: &mut dyn FnMut() -> Duration,
) -> Throughputs {
    let mut ratios = Rounds::default();
    let mut near_rates = (Vec::new(), Vec::new());
    for round in 0..throughput_rounds() {
        let raw_ns = probe.raw_ns();
        let (subject, base) = alternate(round, subject, baseline);
        if std::env::var_os("RING_BENCH_VERBOSE").is_some() {
            eprintln!(
                "round: raw RTT {raw_ns:.0} ns, subject {:.2} ms, baseline {:.2} ms",
                subject.as_secs_f64() * 1e3,
                base.as_secs_f64() * 1e3
            );
        }
        ratios.push(raw_ns, base.as_secs_f64() / subject.as_secs_f64());
        if raw_ns < NEAR_NS {
            near_rates.0.push(items as f64 / subject.as_secs_f64());
            near_rates.1.push(items as f64 / base.as_secs_f64());
        }
    }
    Throughputs { ratios, near_rates }
}

/// The CPU a process last ran on, from `/proc/<pid>/stat` (field 39).
fn cpu_of(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(36)?.parse().ok()
}

/// Runs the interleaved parts `wanted` names (all when `None`).
fn interleaved(wanted: Option<&str>) {
    let mut probe = Probe::new();
    println!(
        "interleaved: {} rounds each ({} for one-by-one throughput), medians; [near: .., far: ..] split the rounds by \
         the raw RTT probed just before each (near < {NEAR_NS} ns, close < {CLOSE_NS} ns), with \
         the round count",
        rounds(),
        throughput_rounds(),
    );
    type Part = fn(&mut Probe);
    let parts: [(&str, Part); 8] = [
        ("spinning", interleaved_spinning),
        ("lines", interleaved_lines),
        ("blocking", interleaved_blocking),
        ("wake-ups", late_wake_ups),
        ("one-by-one", interleaved_one_by_one),
        ("mpmc", interleaved_mpmc),
        ("batch", interleaved_batch),
        ("layout", layout::interleaved_layout),
    ];
    for (name, part) in parts {
        // The layout harness runs only when named: it wants a build of its own
        // (functions aligned to 64 bytes, see layout/mod.rs).
        if wanted.map_or(name != "layout", |wanted| wanted == name) {
            part(&mut probe);
        }
    }
}

fn interleaved_spinning(_: &mut Probe) {
    let mut raw = RawPingPong::new();
    let mut spin = RingPingPong::new(false);
    let mut rtt = Rounds::default();
    for _ in 0..rounds() {
        spin.peer.set_running(false);
        raw.peer.set_running(true);
        let base = raw.round_trips(20_000);
        raw.peer.set_running(false);
        spin.peer.set_running(true);
        let subject = spin.round_trips(20_000);
        let raw_ns = base.as_nanos() as f64 / 20_000.0;
        rtt.push(raw_ns, subject.as_secs_f64() / base.as_secs_f64());
    }
    raw.peer.set_running(true);
    drop((raw, spin));
    println!(
        "interleaved: SpscRing spinning RTT / raw atomic RTT = {}",
        rtt.summary("x", 2)
    );
}

/// Cache lines per message: bare ping-pongs that move one line each way (the
/// value in the index word), two dependent lines (slot, then index: the
/// rings' protocol) and one rotating slot line (value and stamp together: a
/// per-slot-sequence protocol), and the spinning `SpscRing` round trip, in
/// the same rounds; each round tagged by the placement probe.
fn interleaved_lines(probe: &mut Probe) {
    const TRIPS: u64 = 20_000;
    let mut word = LinePingPong::new(lines::Mode::Word);
    let mut two = LinePingPong::new(lines::Mode::SlotThenIndex);
    let mut stamped = LinePingPong::new(lines::Mode::StampedSlot);
    let mut ring = RingPingPong::new(false);
    for peer in [&word.peer, &two.peer, &stamped.peer, &ring.peer] {
        peer.set_running(false);
    }
    let (mut two_ratio, mut stamped_ratio, mut ring_ratio) =
        (Rounds::default(), Rounds::default(), Rounds::default());
    let mut word_ns = Rounds::default();
    for round in 0..rounds() {
        let raw_ns = probe.raw_ns();
        macro_rules! running {
            ($pong:ident) => {{
                $pong.peer.set_running(true);
                let elapsed = $pong.round_trips(TRIPS);
                $pong.peer.set_running(false);
                elapsed
            }};
        }
        let mut time = |which: usize| -> Duration {
            match which {
                0 => running!(word),
                1 => running!(two),
                2 => running!(stamped),
                _ => running!(ring),
            }
        };
        // Rotate the order so that none always runs first.
        let mut times = [Duration::ZERO; 4];
        for k in 0..4 {
            let which = (round + k) % 4;
            times[which] = time(which);
        }
        let base = times[0].as_secs_f64();
        word_ns.push(raw_ns, base * 1e9 / TRIPS as f64);
        two_ratio.push(raw_ns, times[1].as_secs_f64() / base);
        stamped_ratio.push(raw_ns, times[2].as_secs_f64() / base);
        ring_ratio.push(raw_ns, times[3].as_secs_f64() / base);
    }
    for peer in [&word.peer, &two.peer, &stamped.peer, &ring.peer] {
        peer.set_running(true);
    }
    drop((word, two, stamped, ring));
    println!(
        "interleaved: lines per message, round trip / one-line word ping-pong: two dependent \
         lines (slot, then index) = {}; one rotating stamped slot line = {}; SpscRing spinning = {}; \
         the word ping-pong itself = {}",
        two_ratio.summary("x", 2),
        stamped_ratio.summary("x", 2),
        ring_ratio.summary("x", 2),
        word_ns.summary(" ns", 0),
    );
}

fn interleaved_blocking(_: &mut Probe) {
    let mut blocking = RingPingPong::new(true);
    let mut pipe = StreamPingPong::pipe();
    let mut socket = StreamPingPong::unix_socket();
    let (mut ring_ns, mut pipe_ns, mut socket_ns) = (Vec::new(), Vec::new(), Vec::new());
    let (mut apart, mut together) = (Vec::new(), Vec::new());
    let (mut to_pipe, mut to_socket) = (Vec::new(), Vec::new());
    let per_trip = |took: Duration| took.as_nanos() as f64 / 2_000.0;
    for _ in 0..rounds() {
        let ring = per_trip(blocking.round_trips(2_000));
        // Where the two processes ran at the end of the round: the scheduler
        // sometimes queues a woken peer on its waker's CPU, and then every
        // round trip costs two context switches, as a pipe's does.
        let same_cpu = cpu_of(std::process::id()) == cpu_of(blocking.peer.child.id());
        let pipe_trip = per_trip(pipe.round_trips(2_000));
        let socket_trip = per_trip(socket.round_trips(2_000));
        ring_ns.push(ring);
        pipe_ns.push(pipe_trip);
        socket_ns.push(socket_trip);
        to_pipe.push(ring / pipe_trip);
        to_socket.push(ring / socket_trip);
        if same_cpu { &mut together } else { &mut apart }.push(ring / pipe_trip);
        if std::env::var_os("RING_BENCH_VERBOSE").is_some() {
            eprintln!("round: ring {ring:.0} ns, pipe {pipe_trip:.0} ns, same CPU {same_cpu}");
        }
    }
    drop(socket);
    let pinned = blocking_on_one_cpu(&mut blocking, &mut pipe);
    drop((blocking, pipe));
    let (ring_ns, pipe_ns, socket_ns) = (
        median(&mut ring_ns),
        median(&mut pipe_ns),
        median(&mut socket_ns),
    );
    let split = |ratios: &mut Vec<f64>| match ratios.len() {
        0 => "no rounds".to_string(),
        count => format!("{:.2}x ({count})", median(ratios)),
    };
    println!(
        "interleaved: RTT: SpscRing blocking {ring_ns:.0} ns, pipe {pipe_ns:.0} ns, Unix socket \
         {socket_ns:.0} ns; per round, ring/pipe = {:.2}x, ring/socket = {:.2}x; ring/pipe for \
         rounds with the processes on two CPUs {}, on one CPU {}",
        median(&mut to_pipe),
        median(&mut to_socket),
        split(&mut apart),
        split(&mut together)
    );
    println!("interleaved: {pinned}");
}

/// Blocking round trips with both processes pinned to one CPU, where each round
/// trip needs two context switches, against a pipe pinned likewise and against
/// the floor: a ping-pong whose sides wait with `sched_yield` (two context
/// switches and nothing else). The scheduler on this VM puts the processes on
/// one CPU in some rounds of its own accord; pinning measures that case on
/// purpose, and the floor says how close to 0.5x a pipe anything can get there.
fn blocking_on_one_cpu(blocking: &mut RingPingPong, pipe: &mut StreamPingPong) -> String {
    const TRIPS: u64 = 2_000;
    let mut floor = RawPingPong::yielding();
    let pids = [
        blocking.peer.child.id(),
        pipe.peer.child.id(),
        floor.peer.child.id(),
    ];
    let (mut to_pipe, mut floor_to_pipe, mut ring_ns) = (Vec::new(), Vec::new(), Vec::new());
    // The floor's peer yields in a loop while it waits: stopped between its
    // runs, so that it does not take turns on the CPU the others share.
    floor.peer.set_running(false);
    let mut floor_trips = || {
        floor.peer.set_running(true);
        let took = floor.round_trips(TRIPS);
        floor.peer.set_running(false);
        took
    };
    on_one_cpu(&pids, || {
        for round in 0..rounds() {
            let per_trip = |took: Duration| took.as_nanos() as f64 / TRIPS as f64;
            let (ring, floor_trip) =
                alternate(round, &mut || blocking.round_trips(TRIPS), &mut floor_trips);
            let (ring, floor_trip) = (per_trip(ring), per_trip(floor_trip));
            let pipe_trip = per_trip(pipe.round_trips(TRIPS));
            ring_ns.push(ring);
            to_pipe.push(ring / pipe_trip);
            floor_to_pipe.push(floor_trip / pipe_trip);
        }
    });
    format!(
        "both processes pinned to one CPU: SpscRing blocking RTT {:.0} ns; per round, ring/pipe \
         = {:.2}x; the floor (two processes waiting with sched_yield: two context switches a \
         round trip) / pipe = {:.2}x",
        median(&mut ring_ns),
        median(&mut to_pipe),
        median(&mut floor_to_pipe)
    )
}

/// Runs `body` with this thread and the processes `pids` on one CPU (the
/// first this thread may use), then gives each the CPUs this thread had
/// before.
fn on_one_cpu<R>(pids: &[u32], body: impl FnOnce() -> R) -> R {
    use rustix::process::Pid;
    use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
    let before = sched_getaffinity(None).expect("our CPU affinity");
    let first = (0..CpuSet::MAX_CPU)
        .find(|&cpu| before.is_set(cpu))
        .expect("we run on some CPU");
    let mut only_first = CpuSet::new();
    only_first.set(first);
    let pin_all = |set: &CpuSet| {
        sched_setaffinity(None, set).expect("set our CPU affinity");
        for &pid in pids {
            let pid = Pid::from_raw(pid as i32).expect("a child's pid is positive");
            sched_setaffinity(Some(pid), set).expect("set a peer's CPU affinity");
        }
    };
    pin_all(&only_first);
    let result = body();
    pin_all(&before);
    result
}

/// Blocking round trips timed to race the peer's sleep announcement: a missed
/// wake-up shows as a round trip as long as a nap (1 ms or 100 ms, see
/// `blocking::fence_wakers` in shm-typed). Not a ratio: the count in each
/// latency band.
fn late_wake_ups(_: &mut Probe) {
    const TRIPS: u64 = 50_000;
    let mut ring = RingPingPong::new(true);
    let times = ring.late_round_trips(TRIPS);
    drop(ring);
    let bands = [
        ("< 50 us", Duration::from_micros(50)),
        ("50-200 us", Duration::from_micros(200)),
        ("0.2-0.8 ms", Duration::from_micros(800)),
        ("0.8-10 ms", Duration::from_millis(10)),
        ("10-90 ms", Duration::from_millis(90)),
        (">= 90 ms", Duration::MAX),
    ];
    let mut counts = [0usize; 6];
    for took in &times {
        counts[bands.iter().position(|(_, below)| took < below).unwrap()] += 1;
    }
    let listed: Vec<String> = bands
        .iter()
        .zip(counts)
        .map(|((name, _), count)| format!("{name}: {count}"))
        .collect();
    println!(
        "interleaved: SpscRing blocking round trips pushed as the peer starts to sleep, two \
         processes, {TRIPS}: {}; longest {:?}",
        listed.join(", "),
        times.iter().max().unwrap()
    );
}

fn interleaved_one_by_one(probe: &mut Probe) {
    const ONE_BY_ONE: u64 = 2_000_000;
    // A fresh ring (and peer) each round, as rtrb gets a fresh buffer: a 512
    // KiB slot array fills this CPU's 512 KiB L2, so how its physical pages
    // fall on cache sets matters, and one ring for all rounds made whole runs
    // fast or slow together (0.41x to 1.50x rtrb). The peer starts before the
    // clock does (push_one_by_one times itself) and is killed after.
    let mut to_rtrb = throughput_ratios(
        probe,
        ONE_BY_ONE,
        &mut || {
            let rings = SinkRings::new();
            let mut sink = RingSink::new(&rings, false);
            sink.push_one_by_one(WARM_UP);
            sink.push_one_by_one(ONE_BY_ONE)
        },
        &mut || rtrb_one_by_one(ONE_BY_ONE),
    );
    let mut threads_to_rtrb = throughput_ratios(
        probe,
        ONE_BY_ONE,
        &mut || spsc_threads_one_by_one(ONE_BY_ONE),
        &mut || rtrb_one_by_one(ONE_BY_ONE),
    );
    let mut spinning_to_rtrb = throughput_ratios(
        probe,
        ONE_BY_ONE,
        &mut || {
            let rings = SinkRings::spinning();
            let mut sink = RingSink::new(&rings, false);
            sink.push_one_by_one(WARM_UP);
            sink.push_one_by_one(ONE_BY_ONE)
        },
        &mut || rtrb_one_by_one(ONE_BY_ONE),
    );
    let mut spinning_threads_to_rtrb = throughput_ratios(
        probe,
        ONE_BY_ONE,
        &mut || spinning_threads_one_by_one(ONE_BY_ONE),
        &mut || rtrb_one_by_one(ONE_BY_ONE),
    );
    println!(
        "interleaved: one-by-one u64 throughput / rtrb in-process: SpscRing two processes {}; \
         SpscRing two threads {}",
        to_rtrb.summary("rtrb"),
        threads_to_rtrb.summary("rtrb")
    );
    println!(
        "interleaved: one-by-one u64 throughput / rtrb in-process: spinning SpscRing two \
         processes {}; spinning SpscRing two threads {}",
        spinning_to_rtrb.summary("rtrb"),
        spinning_threads_to_rtrb.summary("rtrb")
    );
}

fn interleaved_mpmc(probe: &mut Probe) {
    const ONE_BY_ONE: u64 = 2_000_000;
    let mut mpmc = MpmcSink::new();
    mpmc.push_one_by_one(WARM_UP);
    mpmc.peer.set_running(false);
    let mut to_array_queue = throughput_ratios(
        probe,
        ONE_BY_ONE,
        &mut || {
            mpmc.peer.set_running(true);
            let took = mpmc.push_one_by_one(ONE_BY_ONE);
            mpmc.peer.set_running(false);
            took
        },
        &mut || array_queue_one_by_one(ONE_BY_ONE),
    );
    mpmc.peer.set_running(true);
    drop(mpmc);
    println!(
        "interleaved: MpmcRing one-by-one u64 throughput, two processes / crossbeam ArrayQueue, \
         two threads = {}",
        to_array_queue.summary("ArrayQueue")
    );
}

fn interleaved_batch(probe: &mut Probe) {
    let rings = SinkRings::new();
    let mut batch = RingSink::new(&rings, true);
    let (mut rates, mut streaming_rates) = (Rounds::default(), Rounds::default());
    let rate = |took: Duration| 20_000_000.0 / took.as_secs_f64() / 1e6;
    for round in 0..rounds() {
        batch.peer.set_running(false);
        let raw_ns = probe.raw_ns();
        batch.peer.set_running(true);
        let (plain, streaming) = {
            let batch = std::cell::RefCell::new(&mut batch);
            alternate(
                round,
                &mut || batch.borrow_mut().push_batches(20_000_000, false),
                &mut || batch.borrow_mut().push_batches(20_000_000, true),
            )
        };
        rates.push(raw_ns, rate(plain));
        streaming_rates.push(raw_ns, rate(streaming));
    }
    println!(
        "interleaved: SpscRing batch throughput (slices of 4096 u64, capacity 65536), two \
         processes: push_slice {}; push_slice_streaming {}",
        rates.summary(" M items/s", 0),
        streaming_rates.summary(" M items/s", 0)
    );
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    round_trip(&mut criterion);
    throughput(&mut criterion);
    criterion.final_summary();
    // `cargo bench -- <filter>` runs only the matching criterion groups; the
    // interleaved section runs when no filter is given or the filter says so
    // (`interleaved` all of it, `interleaved/<part>` one part).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    match filters.as_slice() {
        [] => interleaved(None),
        [only] if only == "interleaved" => interleaved(None),
        [only] => {
            if let Some(part) = only.strip_prefix("interleaved/") {
                interleaved(Some(part));
            }
        }
        _ => {}
    }
}
