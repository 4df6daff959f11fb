//! `SpscRing` against iceoryx2 0.10 publish-subscribe, same payload (u64), busy
//! polling, the peer in another process (this binary re-run with a role).
//!
//! Subject and baseline alternate for several rounds; the idle peer is paused
//! with SIGSTOP so that it does not take a vCPU from the measured pair. Prints
//! the median ratios:
//!
//! - round trip: one u64 there and back;
//! - lossless throughput: u64 one at a time, nothing dropped (iceoryx2 with
//!   safe overflow off and `RetryUntilDelivered`; the ring never drops).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iceoryx2::port::backpressure_strategy::BackpressureStrategy;
use iceoryx2::prelude::*;
use shm_typed::{Location, PushError, SpscRing};

const ROUNDS: usize = 11;
const TRIPS: u64 = 20_000;
const ITEMS: u64 = 2_000_000;
const STOP: u64 = u64::MAX;
const REPORT: u64 = u64::MAX - 1;

type Error = Box<dyn std::error::Error>;

fn service_name(kind: &str, tag: &str) -> Result<ServiceName, Error> {
    Ok(format!("shm-typed-bench/{tag}/{kind}")
        .as_str()
        .try_into()?)
}

/// A publish-subscribe service for u64 that never drops a sample.
fn lossless(
    node: &Node<ipc::Service>,
    name: &ServiceName,
) -> Result<
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, u64, ()>,
    Error,
> {
    Ok(node
        .service_builder(name)
        .publish_subscribe::<u64>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(1024)
        .history_size(0)
        .open_or_create()?)
}

/// Peer roles. `ice-echo` and `ice-sink` answer on service "back"; `ring-echo`
/// and `ring-sink` on the second ring. Sinks count until REPORT, then send the
/// count; everyone stops at STOP.
fn peer(role: &str, args: &[String]) -> Result<(), Error> {
    match role {
        "ice-echo" | "ice-sink" => {
            let node = NodeBuilder::new().create::<ipc::Service>()?;
            let there = lossless(&node, &service_name("there", &args[0])?)?;
            let back = lossless(&node, &service_name("back", &args[0])?)?;
            let subscriber = there.subscriber_builder().create()?;
            let publisher = back
                .publisher_builder()
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()?;
            println!("ready");
            let mut count = 0u64;
            loop {
                let Some(sample) = subscriber.receive()? else {
                    std::hint::spin_loop();
                    continue;
                };
                let value = *sample;
                drop(sample);
                match value {
                    STOP => return Ok(()),
                    REPORT => {
                        publisher.send_copy(count)?;
                        count = 0;
                    }
                    value if role == "ice-echo" => {
                        publisher.send_copy(value)?;
                    }
                    _ => count += 1,
                }
            }
        }
        "ring-echo" | "ring-sink" => {
            let there = SpscRing::<u64>::open(Location::Id(args[0].parse()?), 1024)?;
            let back = SpscRing::<u64>::open(Location::Id(args[1].parse()?), 1024)?;
            let mut consumer = there.consumer()?;
            let mut producer = back.producer()?;
            println!("ready");
            let mut count = 0u64;
            loop {
                let Some(value) = consumer.pop()? else {
                    std::hint::spin_loop();
                    continue;
                };
                let answer = match value {
                    STOP => return Ok(()),
                    REPORT => {
                        let counted = count;
                        count = 0;
                        counted
                    }
                    value if role == "ring-echo" => value,
                    _ => {
                        count += 1;
                        continue;
                    }
                };
                producer
                    .push_blocking(answer, Duration::from_secs(60))
                    .map_err(|e| e.to_string())?;
            }
        }
        other => Err(format!("unknown role {other}").into()),
    }
}

/// A peer process, stopped and continued around measurements.
struct Peer(Child);

impl Peer {
    fn start(args: &[&str]) -> Result<Peer, Error> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().ok_or("stdout")?),
            &mut line,
        )?;
        if line.trim() != "ready" {
            return Err(format!("peer {args:?} said {line:?}").into());
        }
        Ok(Peer(child))
    }

    fn set_running(&self, running: bool) {
        let signal = if running {
            libc::SIGCONT
        } else {
            libc::SIGSTOP
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, signal) };
    }

    fn finish(mut self) -> Result<(), Error> {
        self.set_running(true);
        let status = self.0.wait()?;
        if !status.success() {
            return Err(format!("peer failed: {status}").into());
        }
        Ok(())
    }
}

/// Both sides of one transport, from the measuring process.
trait Transport {
    fn send(&mut self, value: u64) -> Result<(), Error>;
    fn receive(&mut self) -> Result<Option<u64>, Error>;

    fn wait(&mut self) -> Result<u64, Error> {
        loop {
            if let Some(value) = self.receive()? {
                return Ok(value);
            }
            std::hint::spin_loop();
        }
    }

    fn round_trips(&mut self, count: u64) -> Result<Duration, Error> {
        let started = Instant::now();
        for value in 0..count {
            self.send(value)?;
            let back = self.wait()?;
            assert_eq!(back, value);
        }
        Ok(started.elapsed())
    }

    fn stream(&mut self, count: u64) -> Result<Duration, Error> {
        let started = Instant::now();
        for value in 0..count {
            self.send(value)?;
        }
        self.send(REPORT)?;
        let counted = self.wait()?;
        let took = started.elapsed();
        assert_eq!(counted, count, "lossless: every item arrived");
        Ok(took)
    }
}

struct Ice {
    publisher: iceoryx2::port::publisher::Publisher<ipc::Service, u64, ()>,
    subscriber: iceoryx2::port::subscriber::Subscriber<ipc::Service, u64, ()>,
    _node: Node<ipc::Service>,
}

impl Ice {
    fn new(tag: &str) -> Result<Ice, Error> {
        let node = NodeBuilder::new().create::<ipc::Service>()?;
        let there = lossless(&node, &service_name("there", tag)?)?;
        let back = lossless(&node, &service_name("back", tag)?)?;
        Ok(Ice {
            publisher: there
                .publisher_builder()
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()?,
            subscriber: back.subscriber_builder().create()?,
            _node: node,
        })
    }
}

impl Transport for Ice {
    fn send(&mut self, value: u64) -> Result<(), Error> {
        self.publisher.send_copy(value)?;
        Ok(())
    }
    fn receive(&mut self) -> Result<Option<u64>, Error> {
        Ok(self.subscriber.receive()?.map(|sample| *sample))
    }
}

struct Ring {
    producer: shm_typed::Producer<'static, u64>,
    consumer: shm_typed::Consumer<'static, u64>,
}

impl Transport for Ring {
    fn send(&mut self, value: u64) -> Result<(), Error> {
        let mut pending = value;
        loop {
            match self.producer.push(pending) {
                Ok(()) => return Ok(()),
                Err(PushError::Full(back)) => pending = back,
                Err(other) => return Err(other.to_string().into()),
            }
            std::hint::spin_loop();
        }
    }
    fn receive(&mut self) -> Result<Option<u64>, Error> {
        Ok(self.consumer.pop()?)
    }
}

/// Two private rings, marked for removal at once (they live while mapped).
fn rings() -> Result<(Ring, [i32; 2]), Error> {
    let mut ids = [0; 2];
    let mut made = Vec::new();
    for id in &mut ids {
        let ring = SpscRing::<u64>::create(Location::Private, 1024)?;
        ring.remove()?;
        let Location::Id(ring_id) = *ring.location() else {
            unreachable!()
        };
        *id = ring_id;
        made.push(&*Box::leak(Box::new(ring)));
    }
    Ok((
        Ring {
            producer: made[0].producer()?,
            consumer: made[1].consumer()?,
        },
        ids,
    ))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn compare(echo: bool) -> Result<(), Error> {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        if echo { "echo" } else { "sink" }
    );
    let (ice_role, ring_role) = if echo {
        ("ice-echo", "ring-echo")
    } else {
        ("ice-sink", "ring-sink")
    };
    let ice_peer = Peer::start(&[ice_role, &tag])?;
    let mut ice = Ice::new(&tag)?;
    let (mut ring, ids) = rings()?;
    let ring_peer = Peer::start(&[ring_role, &ids[0].to_string(), &ids[1].to_string()])?;

    let (mut ratios, mut ice_ns, mut ring_ns) = (Vec::new(), Vec::new(), Vec::new());
    let count = if echo { TRIPS } else { ITEMS };
    for _ in 0..ROUNDS {
        ice_peer.set_running(false);
        ring_peer.set_running(true);
        let subject = if echo {
            ring.round_trips(count)?
        } else {
            ring.stream(count)?
        };
        ring_peer.set_running(false);
        ice_peer.set_running(true);
        let baseline = if echo {
            ice.round_trips(count)?
        } else {
            ice.stream(count)?
        };
        ratios.push(subject.as_secs_f64() / baseline.as_secs_f64());
        ring_ns.push(subject.as_nanos() as f64 / count as f64);
        ice_ns.push(baseline.as_nanos() as f64 / count as f64);
    }
    ring_peer.set_running(true);
    ice_peer.set_running(true);
    ring.send(STOP)?;
    ice.send(STOP)?;
    ring_peer.finish()?;
    ice_peer.finish()?;
    let (ratio, ring_ns, ice_ns) = (
        median(&mut ratios),
        median(&mut ring_ns),
        median(&mut ice_ns),
    );
    if echo {
        println!(
            "round trip: SpscRing {ring_ns:.0} ns, iceoryx2 {ice_ns:.0} ns: SpscRing / iceoryx2 = {ratio:.2}x (median of {ROUNDS})"
        );
    } else {
        println!(
            "lossless throughput: SpscRing {:.1} M u64/s, iceoryx2 {:.1} M u64/s: SpscRing / iceoryx2 = {:.1}x (median of {ROUNDS})",
            1e3 / ring_ns,
            1e3 / ice_ns,
            1.0 / ratio
        );
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(role) = args.first() {
        return peer(role, &args[1..]);
    }
    let _cleanup = RemoveNewIceoryxFiles::new();
    compare(true)?;
    compare(false)?;
    Ok(())
}

/// iceoryx2 leaves management files in `/dev/shm` (`iox2_*`) after its nodes
/// are gone. Removes, on drop, those that were not there when it was made,
/// so that a run leaves `/dev/shm` as it found it.
struct RemoveNewIceoryxFiles(Vec<std::ffi::OsString>);

impl RemoveNewIceoryxFiles {
    fn new() -> Self {
        Self(Self::list())
    }

    fn list() -> Vec<std::ffi::OsString> {
        std::fs::read_dir("/dev/shm")
            .map(|entries| {
                entries
                    .filter_map(|entry| Some(entry.ok()?.file_name()))
                    .filter(|name| name.to_string_lossy().starts_with("iox2_"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for RemoveNewIceoryxFiles {
    fn drop(&mut self) {
        for name in Self::list() {
            if !self.0.contains(&name) {
                let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(name));
            }
        }
    }
}
