//! `shm demo`: a producer and a consumer process stream a `#[repr(C)]` struct
//! through an `SpscRing`; the consumer measures throughput and one-way latency.
//!
//! The ring's segment is marked for removal right after it is created: it lives
//! while the processes have it mapped and disappears with the last of them, so
//! the demo leaves nothing behind whether it ends, fails or is interrupted.

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shm_typed::{Location, SpscRing};

/// What the demo sends: 48 bytes, as a trading or telemetry feed might.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Sample {
    /// Position in the stream; `u64::MAX` ends it.
    pub sequence: u64,
    /// CLOCK_MONOTONIC when sent, in ns (latency phase only, else 0).
    pub sent_ns: u64,
    /// Some payload.
    pub values: [f64; 4],
}

const CAPACITY: u64 = 4096;
const END: u64 = u64::MAX;
/// How long either process waits for the other before giving up.
const PATIENCE: Duration = Duration::from_secs(20);

/// `shm demo` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Samples streamed as fast as possible (the throughput phase).
    #[arg(long, default_value_t = 20_000_000)]
    pub count: u64,
    /// Samples sent one at a time into an empty ring (the latency phase).
    #[arg(long, default_value_t = 200_000)]
    pub latency_samples: u64,
}

/// Arguments of the demo's two worker processes.
#[derive(Debug, clap::Args)]
pub struct Role {
    /// The ring's System V segment id.
    id: i32,
    /// Samples in the throughput phase.
    count: u64,
    /// Samples in the latency phase.
    latency_samples: u64,
}

fn now_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn sample(sequence: u64, sent_ns: u64) -> Sample {
    let x = sequence as f64;
    Sample {
        sequence,
        sent_ns,
        values: [x, x * 0.5, x * 0.25, -x],
    }
}

/// The parent: make the ring, start both workers, relay progress, print results.
pub fn run(options: &Options) -> Result<(), Box<dyn Error>> {
    let ring = SpscRing::<Sample>::create(Location::Private, CAPACITY)?;
    ring.remove()?;
    let Location::Id(id) = *ring.location() else {
        return Err("a private ring has an id".into());
    };
    say!(
        "shm demo: SpscRing<Sample> ({} B each, {CAPACITY} slots) in System V segment {id}, \
         already marked for removal",
        std::mem::size_of::<Sample>()
    );
    say!(
        "  a producer process streams {} samples, then sends {} one at a time; a consumer process checks and times them",
        options.count, options.latency_samples
    );
    let exe = std::env::current_exe()?;
    let args = [
        id.to_string(),
        options.count.to_string(),
        options.latency_samples.to_string(),
    ];
    let mut consumer = Command::new(&exe)
        .arg("demo-consumer")
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut producer = Command::new(&exe)
        .arg("demo-producer")
        .args(&args)
        .spawn()?;

    let lines = BufReader::new(consumer.stdout.take().ok_or("consumer stdout")?);
    let mut results = Vec::new();
    for line in lines.lines() {
        let line = line?;
        if let Some(percent) = line.strip_prefix("progress ") {
            print!("\r  progress {percent:>3}%");
            std::io::stdout().flush()?;
        } else {
            results.push(line);
        }
    }
    say!();
    let consumer_status = consumer.wait()?;
    let producer_status = producer.wait()?;
    if !consumer_status.success() || !producer_status.success() {
        return Err(format!(
            "worker failed: consumer {consumer_status}, producer {producer_status}"
        )
        .into());
    }
    for line in results {
        say!("  {line}");
    }
    drop(ring);
    say!("  the segment is gone with the last process: nothing left in ipcs -m");
    Ok(())
}

/// The producer process.
pub fn producer(role: &Role) -> Result<(), Box<dyn Error>> {
    let ring = SpscRing::<Sample>::open(Location::Id(role.id), CAPACITY)?;
    let mut producer = ring.producer()?;
    for sequence in 0..role.count {
        producer
            .push_blocking(sample(sequence, 0), PATIENCE)
            .map_err(|error| format!("push {sequence}: {error}"))?;
    }
    for offset in 0..role.latency_samples {
        // Wait until the consumer has taken everything: latency, not queueing.
        let deadline = Instant::now() + PATIENCE;
        while producer.free_slots()? < CAPACITY {
            if Instant::now() > deadline {
                return Err("the consumer stopped taking samples".into());
            }
            std::hint::spin_loop();
        }
        producer
            .push_blocking(sample(role.count + offset, now_ns()), PATIENCE)
            .map_err(|error| format!("push: {error}"))?;
    }
    producer
        .push_blocking(sample(END, 0), PATIENCE)
        .map_err(|error| format!("push end: {error}"))?;
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The consumer process: reports progress and results on stdout.
pub fn consumer(role: &Role) -> Result<(), Box<dyn Error>> {
    let ring = SpscRing::<Sample>::open(Location::Id(role.id), CAPACITY)?;
    let mut consumer = ring.consumer()?;
    let mut out = std::io::stdout().lock();
    let total = role.count + role.latency_samples;
    let step = (total / 20).max(1);
    let mut buffer = [sample(0, 0); 256];
    let mut expected = 0u64;
    let mut started = None;
    let mut latencies = Vec::with_capacity(role.latency_samples as usize);
    let mut throughput = None;
    loop {
        let mut got = consumer.pop_into(&mut buffer)?;
        if got == 0 {
            match consumer.pop_blocking(PATIENCE)? {
                Some(value) => {
                    buffer[0] = value;
                    got = 1;
                }
                None => return Err(format!("no sample for {PATIENCE:?} after {expected}").into()),
            }
        }
        let received_ns = now_ns();
        for item in &buffer[..got] {
            if item.sequence == END {
                if expected != total {
                    return Err(format!("stream ended after {expected} of {total}").into());
                }
                report(&mut out, throughput, &mut latencies)?;
                return Ok(());
            }
            if item.sequence != expected || item.values[3] != -(item.sequence as f64) {
                return Err(format!("expected sample {expected}, got {item:?}").into());
            }
            started.get_or_insert_with(Instant::now);
            if item.sent_ns != 0 {
                latencies.push(received_ns.saturating_sub(item.sent_ns));
            }
            expected += 1;
            if expected == role.count {
                throughput = started.map(|s| (role.count, s.elapsed()));
            }
            if expected % step == 0 {
                writeln!(out, "progress {}", expected * 100 / total)?;
                out.flush()?;
            }
        }
    }
}

fn report(
    out: &mut impl Write,
    throughput: Option<(u64, Duration)>,
    latencies: &mut [u64],
) -> Result<(), Box<dyn Error>> {
    if let Some((count, took)) = throughput {
        let per_second = count as f64 / took.as_secs_f64();
        writeln!(
            out,
            "throughput: {count} samples in order in {took:.2?}: {:.1} M samples/s, {:.2} GB/s",
            per_second / 1e6,
            per_second * std::mem::size_of::<Sample>() as f64 / 1e9
        )?;
    }
    if !latencies.is_empty() {
        latencies.sort_unstable();
        writeln!(
            out,
            "one-way latency over {} samples: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
            latencies.len(),
            percentile(latencies, 0.50),
            percentile(latencies, 0.99),
            percentile(latencies, 0.999),
            latencies[latencies.len() - 1],
        )?;
    }
    Ok(())
}
