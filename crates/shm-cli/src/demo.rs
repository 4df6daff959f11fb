//! `shm demo`: a producer and a consumer process stream a `#[repr(C)]` struct
//! through an `SpscRing`; the consumer measures throughput and one-way latency.
//!
//! The ring's segment is marked for removal right after it is created: it lives
//! while the processes have it mapped and disappears with the last of them, so
//! the demo leaves nothing behind whether it ends, fails or is interrupted.
//! Between the `shmget` and the `IPC_RMID` the usual terminating signals are
//! blocked (see [`BlockedSignals`]): a Ctrl-C there waits until the segment is
//! marked, then ends the demo as usual.
//!
//! Latency is recorded in an HDR histogram (3 significant digits); the
//! consumer prints the percentiles and a text histogram of it. Progress goes
//! to stderr: a bar when stderr is a terminal, else a few plain lines.

use std::error::Error;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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

/// The asynchronous signals that end a process by default and that a user
/// or a supervisor sends: Ctrl-C, Ctrl-\\, a closed terminal, `kill`.
const TERMINATING: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// [`TERMINATING`] blocked for this thread while it lives; the previous mask
/// is restored on drop, and a signal that arrived meanwhile is delivered then
/// (and, by default, ends the process).
///
/// The demo holds one from before it creates its segment until after it has
/// marked the segment for removal: a Ctrl-C in between would otherwise end
/// the process with a segment that nobody will ever remove (no header yet,
/// nattch 0). The demo is single-threaded at that point, so the thread's
/// mask is the process's. SIGKILL cannot be blocked: that window stays.
#[derive(Debug)]
struct BlockedSignals {
    previous: libc::sigset_t,
}

impl BlockedSignals {
    fn block() -> std::io::Result<BlockedSignals> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `previous` is written by pthread_sigmask before it is read.
        let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut set);
            for signal in TERMINATING {
                libc::sigaddset(&mut set, signal);
            }
        }
        // SAFETY: both pointers are to valid sigset_t values of this frame.
        let error = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous) };
        if error != 0 {
            return Err(std::io::Error::from_raw_os_error(error));
        }
        Ok(BlockedSignals { previous })
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: `previous` is the mask pthread_sigmask returned in `block`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

/// Shows the consumer's progress on stderr: an indicatif bar on a terminal,
/// otherwise (a pipe, a file, a CI log) a line at every quarter, with no
/// carriage returns.
enum Progress {
    Bar(ProgressBar),
    Lines { next: u64 },
}

impl Progress {
    fn new() -> Progress {
        // indicatif also draws nothing on a terminal it thinks dumb (TERM
        // unset or "dumb"): plain lines there too.
        if !std::io::stderr().is_terminal() || ProgressDrawTarget::stderr().is_hidden() {
            return Progress::Lines { next: 25 };
        }
        let bar = ProgressBar::new(100);
        if let Ok(style) = ProgressStyle::with_template("  progress {bar:40} {pos:>3}% ({elapsed})")
        {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    }

    fn set(&mut self, percent: u64) {
        match self {
            Progress::Bar(bar) => bar.set_position(percent.min(100)),
            Progress::Lines { next } => {
                if percent >= *next && *next <= 100 {
                    // At every quarter reached (several at once if need be: one line).
                    while *next <= percent.min(100) {
                        *next += 25;
                    }
                    eprintln!("  progress {}%", (*next - 25).min(100));
                }
            }
        }
    }

    /// The stream is complete: a last plain line says 100%; the bar is
    /// cleared (the results follow on stdout).
    fn finish(&mut self) {
        self.set(100);
        self.clear();
    }

    /// Clears the bar, so that what follows starts on a clean line.
    fn clear(&mut self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Makes the demo's ring and marks its segment for removal, with the
/// terminating signals blocked in between (see [`BlockedSignals`]).
fn create_removed_ring() -> Result<(SpscRing<Sample>, i32), Box<dyn Error>> {
    let blocked = BlockedSignals::block().map_err(|error| format!("blocking signals: {error}"))?;
    let ring = SpscRing::<Sample>::create(Location::Private, CAPACITY)?;
    ring.remove()?;
    // Only now may a Ctrl-C that came meanwhile end the process.
    drop(blocked);
    let Location::Id(id) = *ring.location() else {
        return Err("a private ring has an id".into());
    };
    Ok((ring, id))
}

/// The parent: make the ring, start both workers, relay progress, print results.
pub fn run(options: &Options) -> Result<(), Box<dyn Error>> {
    let (ring, id) = create_removed_ring()?;
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
    let mut progress = Progress::new();
    for line in lines.lines() {
        let line = line?;
        if let Some(percent) = line.strip_prefix("progress ") {
            progress.set(percent.trim().parse().unwrap_or(0));
        } else {
            results.push(line);
        }
    }
    let consumer_status = consumer.wait()?;
    let producer_status = producer.wait()?;
    if !consumer_status.success() || !producer_status.success() {
        progress.clear();
        return Err(format!(
            "worker failed: consumer {consumer_status}, producer {producer_status}"
        )
        .into());
    }
    progress.finish();
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

/// Latencies up to this many nanoseconds are told apart; longer ones are
/// counted as this long (no wait in the demo lasts longer than [`PATIENCE`]).
const LATENCY_BOUND_NS: u64 = 100_000_000_000;

/// An empty latency histogram: 1 ns to [`LATENCY_BOUND_NS`], 3 significant digits.
fn latency_histogram() -> Result<Histogram<u64>, Box<dyn Error>> {
    Ok(Histogram::new_with_bounds(1, LATENCY_BOUND_NS, 3)?)
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
    let mut latencies = latency_histogram()?;
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
                report(&mut out, throughput, &latencies)?;
                return Ok(());
            }
            if item.sequence != expected || item.values[3] != -(item.sequence as f64) {
                return Err(format!("expected sample {expected}, got {item:?}").into());
            }
            started.get_or_insert_with(Instant::now);
            if item.sent_ns != 0 {
                latencies.saturating_record(received_ns.saturating_sub(item.sent_ns).max(1));
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
    latencies: &Histogram<u64>,
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
        writeln!(
            out,
            "one-way latency over {} samples: min {} ns, p50 {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
            latencies.len(),
            latencies.min(),
            latencies.value_at_quantile(0.50),
            latencies.value_at_quantile(0.90),
            latencies.value_at_quantile(0.99),
            latencies.value_at_quantile(0.999),
            latencies.max(),
        )?;
        for line in histogram_lines(latencies) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// Width of the longest bar in the text histogram.
const BAR_WIDTH: u64 = 40;
/// Rows of the text histogram at most; the last one takes in all above it.
const MAX_ROWS: usize = 16;

/// A text histogram of `latencies`: one row per power-of-two range of
/// nanoseconds, from the lowest range with a sample in it to the highest (at
/// most [`MAX_ROWS`]: the last row then counts everything from its start up,
/// `N+ ns`), the bar scaled to the fullest row:
///
/// ```text
/// one-way latency histogram (ns, power-of-two ranges):
///     64-127 ns |########################################|   151234  75.6%
///    128-255 ns |######                                  |    22970  11.5%
/// ```
fn histogram_lines(latencies: &Histogram<u64>) -> Vec<String> {
    // Counts per range [2^k, 2^(k+1)): HDR buckets never straddle a power of
    // two, so every recorded value's bucket falls in exactly one range.
    let mut ranges = [0u64; 64];
    for value in latencies.iter_recorded() {
        let level = value.value_iterated_to().max(1);
        ranges[level.ilog2() as usize] += value.count_since_last_iteration();
    }
    let (Some(first), Some(last)) = (
        ranges.iter().position(|&count| count > 0),
        ranges.iter().rposition(|&count| count > 0),
    ) else {
        return Vec::new();
    };
    // (label, count) per row; a last row for everything above MAX_ROWS - 1 rows.
    let mut rows: Vec<(String, u64)> = Vec::new();
    for (power, &count) in ranges.iter().enumerate().take(last + 1).skip(first) {
        let low = 1u64 << power;
        if rows.len() == MAX_ROWS - 1 && power < last {
            let rest = ranges[power..=last].iter().sum();
            rows.push((format!("{low}+ ns"), rest));
            break;
        }
        let high = low.saturating_sub(1).saturating_add(low);
        rows.push((format!("{low}-{high} ns"), count));
    }
    let fullest = rows.iter().map(|row| row.1).max().unwrap_or(1).max(1);
    let total = latencies.len().max(1);
    let label_width = rows.iter().map(|row| row.0.len()).max().unwrap_or(0);
    let mut lines = vec!["one-way latency histogram (ns, power-of-two ranges):".to_owned()];
    for (label, count) in rows {
        let width = count.saturating_mul(BAR_WIDTH).div_ceil(fullest) as usize;
        lines.push(format!(
            "{label:>label_width$} |{:<bar$}| {count:>8} {:>5.1}%",
            "#".repeat(width),
            count as f64 * 100.0 / total as f64,
            bar = BAR_WIDTH as usize,
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count at the end of a histogram row.
    fn row_count(row: &str) -> u64 {
        let after_bar = row.rsplit('|').next().unwrap();
        after_bar
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn row<'a>(lines: &'a [String], label: &str) -> &'a str {
        lines
            .iter()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no row {label}: {lines:#?}"))
    }

    #[test]
    fn the_histogram_counts_every_sample_once_in_its_range() {
        let mut latencies = latency_histogram().unwrap();
        for value in [1, 2, 3, 100, 127, 128, 255, 256, 2000, 3000] {
            latencies.saturating_record(value);
        }
        let lines = histogram_lines(&latencies);
        assert!(lines[0].contains("histogram"));
        assert_eq!(row_count(row(&lines, "1-1 ns")), 1);
        assert_eq!(row_count(row(&lines, "2-3 ns")), 2);
        assert_eq!(row_count(row(&lines, "64-127 ns")), 2);
        assert_eq!(row_count(row(&lines, "128-255 ns")), 2);
        assert_eq!(row_count(row(&lines, "256-511 ns")), 1);
        // Empty ranges in between are shown, with an empty bar.
        assert_eq!(row_count(row(&lines, "512-1023 ns")), 0);
        assert!(row(&lines, "512-1023 ns").contains("|  "));
        assert_eq!(row_count(row(&lines, "1024-2047 ns")), 1);
        assert_eq!(row_count(row(&lines, "2048-4095 ns")), 1);
        assert_eq!(lines.len(), 1 + 12, "1 ns up to 4095 ns: {lines:#?}");
        assert_eq!(lines[1..].iter().map(|row| row_count(row)).sum::<u64>(), 10);
        // The fullest rows have the whole bar.
        assert!(row(&lines, "2-3 ns").contains(&"#".repeat(BAR_WIDTH as usize)));
        // Rows are aligned: the bars start in one column.
        let bars: Vec<usize> = lines[1..]
            .iter()
            .map(|row| row.find('|').unwrap())
            .collect();
        assert!(bars.windows(2).all(|pair| pair[0] == pair[1]), "{lines:#?}");
    }

    #[test]
    fn a_long_tail_is_folded_into_the_last_row() {
        let mut latencies = latency_histogram().unwrap();
        for value in [100, 100, 1 << 20, LATENCY_BOUND_NS * 2] {
            latencies.saturating_record(value);
        }
        let lines = histogram_lines(&latencies);
        assert_eq!(lines.len(), 1 + MAX_ROWS, "{lines:#?}");
        let last = lines.last().unwrap();
        // 64 ns is 2^6: rows 2^6 .. 2^20, then 2^21 and up.
        assert!(last.trim_start().starts_with("2097152+ ns"), "{lines:#?}");
        assert_eq!(row_count(last), 1, "the saturated sample: {lines:#?}");
        assert_eq!(row_count(row(&lines, "1048576-2097151 ns")), 1);
        assert_eq!(lines[1..].iter().map(|row| row_count(row)).sum::<u64>(), 4);
        let bars: Vec<usize> = lines[1..]
            .iter()
            .map(|row| row.find('|').unwrap())
            .collect();
        assert!(bars.windows(2).all(|pair| pair[0] == pair[1]), "{lines:#?}");
    }

    #[test]
    fn an_empty_histogram_prints_nothing() {
        assert!(histogram_lines(&latency_histogram().unwrap()).is_empty());
    }
}
