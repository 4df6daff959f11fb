//! `shm create`: every option it accepts takes effect, or is refused.

use std::time::Duration;

use shm_sys::posix::PosixSegment;
use shm_sys::sysv::Segment;
use shm_sys::{Key, Mode};
use shm_typed::{Location, Region, Shared, SpscRing};

use crate::segments::{parse_target, printable, Result, Target};

/// `shm create` options.
#[derive(Debug, clap::Args)]
pub struct CreateOptions {
    /// Where: 0xKEY, path:proj or /posix-name; omitted: a new IPC_PRIVATE segment.
    pub target: Option<String>,
    /// A raw segment of this many bytes (no header).
    #[arg(long, conflicts_with_all = ["u64", "ring"])]
    pub size: Option<usize>,
    /// A typed `u64` value (a `Shared<u64>`) with this initial value.
    #[arg(long, conflicts_with = "ring")]
    pub u64: Option<u64>,
    /// An `SpscRing<u64>` with this capacity (a power of two).
    #[arg(long)]
    pub ring: Option<u64>,
    /// Permission bits, octal (600, 0644, 0o640), at most 777; applied exactly
    /// to every kind, System V and POSIX (no umask).
    #[arg(long, default_value = "600")]
    pub mode: String,
    /// Stay attached until killed (for scripts and tests).
    #[arg(long)]
    pub hold: bool,
}

fn location_of(target: Option<&str>) -> Result<Location> {
    Ok(match target.map(parse_target).transpose()? {
        None => Location::Private,
        Some(Target::Key(key)) => Location::from(key),
        Some(Target::Posix(name)) => Location::Posix(name),
        Some(Target::Id(id)) => {
            return Err(
                format!("cannot create by id ({id}): give a key, path:proj or /name").into(),
            )
        }
    })
}

fn report_created(location: &Location) {
    match location {
        Location::Id(id) => say!("created System V segment {id}"),
        other => say!("created {other}"),
    }
}

/// Octal permission bits: `600`, `0644` or `0o640`, at most `777`.
fn parse_mode(text: &str) -> Result<Mode> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u16::from_str_radix(digits, 8)
        .ok()
        .filter(|_| !digits.is_empty() && !digits.starts_with(['+', '-']))
        .and_then(Mode::try_new)
        .ok_or_else(|| {
            format!("bad mode {text:?}: octal permission bits, at most 777 (600, 0644, ...)").into()
        })
}

/// An `SpscRing<u64>` at `location` whose segment has permission bits `mode`.
///
/// `SpscRing::create` always makes its segment `0600`, so the segment is made
/// here, with the mode, and the ring initialised in it (`create_in`); if that
/// fails, the segment is removed again. Returns the ring and the location it
/// is opened by.
fn create_ring(
    location: &Location,
    capacity: u64,
    mode: Mode,
) -> Result<(SpscRing<u64>, Location)> {
    if !capacity.is_power_of_two() {
        return Err(format!(
            "cannot create a ring at {location}: capacity {capacity} is not a power of two"
        )
        .into());
    }
    let len = SpscRing::<u64>::segment_len(location, capacity)
        .map_err(|error| format!("cannot create a ring: {error}"))?;
    let initialise = |region: Region| {
        SpscRing::<u64>::create_in(region, capacity)
            .map_err(|error| format!("initialising a ring in {location}: {error}"))
    };
    match location {
        Location::Posix(name) => {
            let object = PosixSegment::create_with_mode(name, len, mode)?;
            let ring = object
                .map()
                .map_err(|error| error.to_string())
                .and_then(|mapping| initialise(Region::from_mapping(mapping)));
            match ring {
                Ok(ring) => Ok((ring, location.clone())),
                Err(error) => {
                    let _ = PosixSegment::unlink(object.name());
                    Err(error.into())
                }
            }
        }
        Location::Private | Location::Key(_) => {
            let key = match location {
                Location::Key(key) => *key,
                _ => Key::PRIVATE,
            };
            let segment = Segment::options(key).size(len).mode(mode).create()?;
            let ring = segment
                .attach()
                .map_err(|error| error.to_string())
                .and_then(|mapping| initialise(Region::from_mapping(mapping)));
            match ring {
                Ok(ring) => {
                    let location = match location {
                        Location::Private => Location::Id(segment.id()),
                        other => other.clone(),
                    };
                    Ok((ring, location))
                }
                Err(error) => {
                    let _ = segment.remove();
                    Err(error.into())
                }
            }
        }
        other => Err(format!("cannot create a ring at {other}").into()),
    }
}

/// `shm create`.
pub fn create(options: &CreateOptions) -> Result {
    let mode = parse_mode(&options.mode)?;
    let location = location_of(options.target.as_deref())?;
    // Keep whatever we made mapped while --hold waits.
    let _keep: Box<dyn std::any::Any> = if let Some(size) = options.size {
        match &location {
            Location::Posix(name) => {
                let object = PosixSegment::create_with_mode(name, size, mode)?;
                let mapping = object.map().inspect_err(|_| {
                    let _ = PosixSegment::unlink(object.name());
                })?;
                say!("created {}", printable(object.name()));
                Box::new(mapping)
            }
            other => {
                let key = match other {
                    Location::Key(key) => *key,
                    _ => Key::PRIVATE,
                };
                let segment = Segment::options(key).size(size).mode(mode).create()?;
                let mapping = segment.attach().inspect_err(|_| {
                    let _ = segment.remove();
                })?;
                report_created(&if key.is_private() {
                    Location::Id(segment.id())
                } else {
                    Location::Key(key)
                });
                Box::new(mapping)
            }
        }
    } else if let Some(value) = options.u64 {
        let shared = Shared::<u64>::options()
            .mode(mode)
            .create(location, value)?;
        report_created(shared.location());
        Box::new(shared)
    } else if let Some(capacity) = options.ring {
        let (ring, location) = create_ring(&location, capacity, mode)?;
        report_created(&location);
        Box::new(ring)
    } else {
        return Err("say what to create: --size N, --u64 VALUE or --ring CAPACITY".into());
    };
    if options.hold {
        say!("holding; kill this process to detach");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(())
}
