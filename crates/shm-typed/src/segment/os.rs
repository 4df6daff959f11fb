//! The operating-system object behind a segment, for every [`Location`]: create
//! or open it and map it as a [`Region`], find its creator, remove it. Only the
//! [`Segment`](super::Segment) handle calls this.

use std::time::Duration;

use shm_sys::posix::PosixSegment;
use shm_sys::sysv::{Access, Segment};
use shm_sys::{Key, Mode};

use crate::error::{Error, Result};
use crate::fault;
use crate::location::Location;
use crate::segment::format::PAYLOAD_OFFSET;
use crate::segment::region::Region;

/// The OS object behind a segment, for `stat` and `remove`.
#[derive(Debug)]
pub(crate) enum Backend {
    /// A System V segment.
    SysV(Segment),
    /// A POSIX object, by name.
    Posix(String),
    /// A heap region: nothing to remove.
    Heap,
}

pub(crate) fn remove_backend(backend: &Backend) -> Result<()> {
    match backend {
        Backend::SysV(segment) => segment.remove()?,
        Backend::Posix(name) => PosixSegment::unlink(name)?,
        Backend::Heap => {}
    }
    Ok(())
}

/// The System V key of a key or ftok location.
fn sysv_key(location: &Location) -> Result<Key> {
    match location {
        Location::Key(key) => Ok(*key),
        Location::Ftok(path, project) => Ok(Key::ftok(path, *project)?),
        other => Err(Error::Unsupported {
            location: other.clone(),
            what: "not a System V key location".into(),
        }),
    }
}

/// A store entry has no OS object of its own: its store makes and opens it.
fn entry_unsupported(location: &Location) -> Error {
    Error::Unsupported {
        location: location.clone(),
        what: "a store entry is created and opened through its Store".into(),
    }
}

/// Makes the OS object for a new segment and maps it.
pub(crate) fn create_backend(
    location: &Location,
    len: usize,
    mode: Mode,
) -> Result<(Region, Backend, Location)> {
    match location {
        Location::Key(_) | Location::Ftok(..) | Location::Private => {
            let key = match location {
                Location::Private => Key::PRIVATE,
                other => sysv_key(other)?,
            };
            let segment = Segment::options(key).size(len).mode(mode).create()?;
            fault::point("create:after-shmget");
            let mapping = match segment.attach() {
                Ok(mapping) => mapping,
                Err(error) => {
                    let _ = segment.remove();
                    return Err(error.into());
                }
            };
            fault::point("create:after-attach");
            // A private segment is found by id from now on.
            let location = match location {
                Location::Private => Location::Id(segment.id()),
                other => other.clone(),
            };
            Ok((
                Region::from_mapping(mapping),
                Backend::SysV(segment),
                location,
            ))
        }
        Location::Posix(name) => {
            let object = PosixSegment::create_with_mode(name, len, mode)?;
            let mapping = match object.map() {
                Ok(mapping) => mapping,
                Err(error) => {
                    let _ = PosixSegment::unlink(name);
                    return Err(error.into());
                }
            };
            Ok((
                Region::from_mapping(mapping),
                Backend::Posix(object.name().to_owned()),
                location.clone(),
            ))
        }
        Location::Id(_) => Err(Error::Unsupported {
            location: location.clone(),
            what: "cannot create a segment by id; use Location::Private".into(),
        }),
        Location::Heap => Ok((Region::heap(len), Backend::Heap, Location::Heap)),
        Location::Entry { .. } => Err(entry_unsupported(location)),
    }
}

/// Opens and maps an existing segment; also returns the OS's creator pid when it
/// knows one (System V).
pub(crate) fn open_backend(
    location: &Location,
    access: Access,
    len: usize,
    init_timeout: Duration,
) -> Result<(Region, Backend, Option<u32>)> {
    match location {
        Location::Key(_) | Location::Ftok(..) | Location::Id(_) => {
            let segment = match location {
                Location::Id(id) => Segment::from_id(*id)?,
                other => Segment::options(sysv_key(other)?).access(access).open()?,
            };
            let mapping = match access {
                Access::ReadWrite => segment.attach()?,
                Access::ReadOnly => segment.attach_read_only()?,
            };
            let os_creator = segment.stat().ok().map(|info| info.cpid);
            Ok((
                Region::from_mapping(mapping),
                Backend::SysV(segment),
                os_creator,
            ))
        }
        Location::Posix(name) => {
            let object = match access {
                Access::ReadWrite => PosixSegment::open(name)?,
                Access::ReadOnly => PosixSegment::open_read_only(name)?,
            };
            // A creator sizes the object right after creating it: wait for that.
            let started = std::time::Instant::now();
            while object.size()? < len.min(PAYLOAD_OFFSET) && started.elapsed() < init_timeout {
                std::thread::sleep(Duration::from_millis(1));
            }
            // The header is checked against this size once, on open. A peer with
            // write access can still shrink the object afterwards, and Linux has
            // no seal for shm_open objects: accesses past the new end then raise
            // SIGBUS (see shm_sys::posix::PosixSegment). System V sizes are fixed.
            let mapping = match access {
                Access::ReadWrite => object.map(),
                Access::ReadOnly => object.map_read_only(),
            }
            .map_err(|error| match error {
                shm_sys::Error::InvalidSize { .. } => Error::TooSmall {
                    location: location.clone(),
                    needed: len,
                    found: 0,
                },
                other => other.into(),
            })?;
            Ok((
                Region::from_mapping(mapping),
                Backend::Posix(object.name().to_owned()),
                None,
            ))
        }
        Location::Private => Err(Error::Unsupported {
            location: location.clone(),
            what: "IPC_PRIVATE names no existing segment; open it by Location::Id".into(),
        }),
        Location::Heap => Err(Error::Unsupported {
            location: location.clone(),
            what: "a heap region is opened with SharedOptions::open_in".into(),
        }),
        Location::Entry { .. } => Err(entry_unsupported(location)),
    }
}

/// Opens the System V segment at a key location, creating it if there is none
/// (`IPC_CREAT` without `IPC_EXCL`), and maps it read-write. Also returns
/// whether this call created it and the OS's creator pid.
pub(crate) fn open_or_create_sysv(
    location: &Location,
    len: usize,
    mode: Mode,
) -> Result<(Region, Backend, bool, Option<u32>)> {
    let key = sysv_key(location)?;
    let (segment, created) = Segment::options(key)
        .size(len)
        .mode(mode)
        .open_or_create()?;
    if created {
        fault::point("create:after-shmget");
    }
    let mapping = match segment.attach() {
        Ok(mapping) => mapping,
        Err(error) => {
            if created {
                let _ = segment.remove();
            }
            return Err(error.into());
        }
    };
    if created {
        fault::point("create:after-attach");
    }
    let os_creator = segment.stat().ok().map(|info| info.cpid);
    Ok((
        Region::from_mapping(mapping),
        Backend::SysV(segment),
        created,
        os_creator,
    ))
}
