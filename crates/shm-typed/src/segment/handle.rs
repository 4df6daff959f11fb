//! [`Segment`]: the one handle every typed kind holds. It owns the mapping, the
//! OS object behind it and the location others find it by, and it makes and
//! opens segments from a kind's [`Spec`] and initialiser: a kind brings only
//! those and its own operations.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use shm_sys::sysv::{Access, SegmentInfo};
use shm_sys::Mode;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::lock::ShmMutex;
use crate::segment::format::{Header, Kind, PAYLOAD_OFFSET};
use crate::segment::header::{self, Spec, Wait};
use crate::segment::os::{self, Backend};
use crate::segment::region::Region;

/// How to make or find a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opening {
    /// Permission bits of a new segment.
    pub mode: Mode,
    /// Read-write, or read-only (`SHM_RDONLY` / `PROT_READ`).
    pub access: Access,
    /// How long an opener waits for a creator that is still initialising.
    pub init_timeout: Duration,
}

impl Default for Opening {
    /// Owner-only, read-write, waiting at most 1 s for a creator.
    fn default() -> Self {
        Opening {
            mode: Mode::OWNER_RW,
            access: Access::ReadWrite,
            init_timeout: Duration::from_secs(1),
        }
    }
}

/// A mapped segment whose header was written by us or checked against a spec.
pub(crate) struct Segment {
    /// Shared with the regions of a store's entries, which point into it.
    region: Arc<Region>,
    backend: Backend,
    location: Location,
}

impl Segment {
    /// Creates the OS object for `spec` at `location`, maps it, writes the
    /// header and (through `init`) the payload, and publishes `ready`. Removes
    /// the object again if any step fails.
    pub(crate) fn create(
        location: &Location,
        spec: &Spec,
        mode: Mode,
        init: impl Fn(&Region),
    ) -> Result<Segment> {
        let (region, backend, location) = os::create_backend(location, spec.segment_len(), mode)?;
        Segment::initialise(region, backend, location, spec, init)
    }

    /// Opens and maps the segment at `location`, waits for its creator, and
    /// checks its header against `spec`.
    pub(crate) fn open(location: &Location, spec: &Spec, opening: Opening) -> Result<Segment> {
        let (region, backend, os_creator) = os::open_backend(
            location,
            opening.access,
            spec.segment_len(),
            opening.init_timeout,
        )?;
        Segment::check(region, backend, location.clone(), spec, opening, os_creator)
    }

    /// [`open`](Segment::open) for a kind whose spec depends on its own
    /// header (a store's size and directory capacity): magic, version,
    /// platform and kind are checked first, then `derive` computes the spec
    /// from the header (an impossible header is its error), and the header is
    /// validated against that spec. The segment is mapped once.
    pub(crate) fn open_derived<S>(
        location: &Location,
        kind: Kind,
        opening: Opening,
        derive: impl FnOnce(&Header) -> Result<(Spec, S)>,
    ) -> Result<(Segment, S)> {
        let (region, backend, os_creator) = os::open_backend(
            location,
            opening.access,
            PAYLOAD_OFFSET,
            opening.init_timeout,
        )?;
        Segment::check_derived(
            region,
            backend,
            location.clone(),
            kind,
            opening,
            os_creator,
            derive,
        )
    }

    /// Opens the segment at `location`, or creates it if there is none. Of
    /// many processes racing here exactly one creates and initialises; the
    /// others wait for it and validate. The flag says whether this call
    /// created.
    ///
    /// A System V segment whose creator died before publishing `ready` is
    /// removed (by id: the one we saw, never a successor) and the whole
    /// open-or-create starts again, so that exactly one of the racers
    /// creates and initialises a fresh segment under the key and the others
    /// open that one. Re-initialising in place instead would need every racer
    /// to agree on who re-initialises from words the dead creator may have
    /// half written; a fresh segment needs only `IPC_CREAT | IPC_EXCL`.
    pub(crate) fn open_or_create(
        location: &Location,
        spec: &Spec,
        opening: Opening,
        init: impl Fn(&Region),
    ) -> Result<(Segment, bool)> {
        match location {
            Location::Key(_) | Location::Ftok(..) => {
                // Each turn needs another creator to die initialising, or a
                // segment to vanish between our lookup and our attach.
                let mut turns_left = 16;
                loop {
                    let (region, backend, created, os_creator) =
                        match os::open_or_create_sysv(location, spec.segment_len(), opening.mode) {
                            Ok(found) => found,
                            // Found by key, then removed and destroyed before
                            // we attached (a racer took a dead creator's
                            // segment over): look the key up again.
                            Err(Error::Sys(shm_sys::Error::NotFound { .. })) if turns_left > 1 => {
                                turns_left -= 1;
                                continue;
                            }
                            Err(other) => return Err(other),
                        };
                    if created {
                        return Segment::initialise(region, backend, location.clone(), spec, init)
                            .map(|segment| (segment, true));
                    }
                    let wait = Wait {
                        timeout: opening.init_timeout,
                        os_creator,
                    };
                    match header::open(&region, location, spec, wait) {
                        Ok(_) => {
                            return Ok((Segment::wrap(region, backend, location.clone()), false))
                        }
                        Err(error @ Error::CreatorDied { .. }) => {
                            turns_left -= 1;
                            // Still mapped, so it cannot have been destroyed
                            // and its id not reused: look once more.
                            if turns_left == 0 || !header::died_initialising(&region, os_creator) {
                                return Err(error);
                            }
                            match os::remove_backend(&backend) {
                                // We removed it, or another racer did first.
                                Ok(()) | Err(Error::Sys(shm_sys::Error::NotFound { .. })) => {}
                                // Not allowed to remove it: the creator's
                                // death is the answer.
                                Err(_) => return Err(error),
                            }
                        }
                        Err(other) => return Err(other),
                    }
                }
            }
            Location::Posix(_) => loop {
                match Segment::create(location, spec, opening.mode, &init) {
                    Ok(segment) => return Ok((segment, true)),
                    Err(Error::Sys(shm_sys::Error::AlreadyExists { .. })) => {}
                    Err(other) => return Err(other),
                }
                match Segment::open(location, spec, opening) {
                    Ok(segment) => return Ok((segment, false)),
                    // Unlinked between our create and open: try again.
                    Err(Error::Sys(shm_sys::Error::NotFound { .. })) => continue,
                    Err(other) => return Err(other),
                }
            },
            Location::Private | Location::Heap => {
                Segment::create(location, spec, opening.mode, init).map(|segment| (segment, true))
            }
            Location::Id(_) | Location::Entry { .. } => {
                Segment::open(location, spec, opening).map(|segment| (segment, false))
            }
        }
    }

    /// Initialises a blank region that has no OS object of its own (heap
    /// memory, or a store's entry); errors name it as `location`.
    pub(crate) fn create_in(
        region: Region,
        location: Location,
        spec: &Spec,
        init: impl Fn(&Region),
    ) -> Result<Segment> {
        Segment::initialise(region, Backend::Heap, location, spec, init)
    }

    /// Opens a region that has no OS object of its own, validating its header
    /// against `spec` (waiting at most `init_timeout` for its creator).
    pub(crate) fn open_in(
        region: Region,
        location: Location,
        spec: &Spec,
        init_timeout: Duration,
    ) -> Result<Segment> {
        let opening = Opening {
            init_timeout,
            ..Opening::default()
        };
        Segment::check(region, Backend::Heap, location, spec, opening, None)
    }

    /// [`open_in`](Segment::open_in) with a spec derived from the header, as
    /// in [`open_derived`](Segment::open_derived).
    pub(crate) fn open_in_derived<S>(
        region: Region,
        location: Location,
        kind: Kind,
        init_timeout: Duration,
        derive: impl FnOnce(&Header) -> Result<(Spec, S)>,
    ) -> Result<(Segment, S)> {
        let opening = Opening {
            init_timeout,
            ..Opening::default()
        };
        Segment::check_derived(region, Backend::Heap, location, kind, opening, None, derive)
    }

    /// Checks a region that may be a read-only attachment, as it is now:
    /// no waiting for a creator (for tools such as `shm inspect`). A region
    /// that does not hold a ready segment of ours is [`Error::WrongKind`];
    /// otherwise as [`open_in_derived`](Segment::open_in_derived).
    pub(crate) fn view_derived<S>(
        region: Region,
        location: Location,
        kind: Kind,
        derive: impl FnOnce(&Header) -> Result<(Spec, S)>,
    ) -> Result<(Segment, S)> {
        let derived = header::check_derived(&region, &location, kind, derive)?;
        Ok((Segment::wrap(region, Backend::Heap, location), derived))
    }

    fn initialise(
        region: Region,
        backend: Backend,
        location: Location,
        spec: &Spec,
        init: impl Fn(&Region),
    ) -> Result<Segment> {
        if let Err(error) = header::initialize(&region, &location, spec, init) {
            // Do not leave a half-made segment behind.
            let _ = os::remove_backend(&backend);
            return Err(error);
        }
        Ok(Segment::wrap(region, backend, location))
    }

    fn check(
        region: Region,
        backend: Backend,
        location: Location,
        spec: &Spec,
        opening: Opening,
        os_creator: Option<u32>,
    ) -> Result<Segment> {
        let wait = Wait {
            timeout: opening.init_timeout,
            os_creator,
        };
        header::open(&region, &location, spec, wait)?;
        Ok(Segment::wrap(region, backend, location))
    }

    fn check_derived<S>(
        region: Region,
        backend: Backend,
        location: Location,
        kind: Kind,
        opening: Opening,
        os_creator: Option<u32>,
        derive: impl FnOnce(&Header) -> Result<(Spec, S)>,
    ) -> Result<(Segment, S)> {
        let wait = Wait {
            timeout: opening.init_timeout,
            os_creator,
        };
        let derived = header::open_derived(&region, &location, kind, wait, derive)?;
        Ok((Segment::wrap(region, backend, location), derived))
    }

    fn wrap(region: Region, backend: Backend, location: Location) -> Segment {
        Segment {
            region: Arc::new(region),
            backend,
            location,
        }
    }

    /// The mapped bytes.
    #[inline]
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// The mapped bytes, for regions that point into them (a store's entries).
    pub(crate) fn shared_region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Gives up the handle and returns its region. The region is never shared
    /// but through [`shared_region`](Segment::shared_region), which only a
    /// store uses; should it be shared, a region over the same bytes that
    /// keeps the whole alive is returned.
    pub(crate) fn into_region(self) -> Region {
        match Arc::try_unwrap(self.region) {
            Ok(region) => region,
            Err(shared) => {
                let len = shared.len();
                Region::part(&shared, 0, len).unwrap_or_else(|| Region::heap(len))
            }
        }
    }

    /// Where the segment is: for one created as [`Location::Private`], its
    /// [`Location::Id`], which other processes open.
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    /// The segment's lock (every segment has one, at
    /// [`LOCK_OFFSET`](crate::format::LOCK_OFFSET); checked on create and open).
    #[inline]
    pub(crate) fn lock(&self) -> &ShmMutex {
        header::lock_of(&self.region)
    }

    /// `IPC_STAT` of the System V segment behind this one.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for POSIX and heap segments.
    pub(crate) fn stat(&self) -> Result<SegmentInfo> {
        match &self.backend {
            Backend::SysV(segment) => Ok(segment.stat()?),
            _ => Err(Error::Unsupported {
                location: self.location.clone(),
                what: "IPC_STAT exists only for System V segments".into(),
            }),
        }
    }

    /// Removes the OS object (`IPC_RMID`, or `shm_unlink` for POSIX); nothing
    /// for heap regions and store entries. Mappings stay usable until dropped.
    pub(crate) fn remove(&self) -> Result<()> {
        os::remove_backend(&self.backend)
    }

    /// [`Error::Corrupted`] naming this segment.
    #[cold]
    #[inline(never)]
    pub(crate) fn corrupted(&self, what: String) -> Error {
        Error::Corrupted {
            location: self.location.clone(),
            what,
        }
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("location", &self.location)
            .field("len", &self.region.len())
            .field("read_only", &self.region.is_read_only())
            .finish()
    }
}
