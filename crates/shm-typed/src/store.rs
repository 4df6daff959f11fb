//! [`Store`]: many named, typed objects and rings in one segment.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;
use shm_sys::Mode;

use crate::backend::{create_segment, open_segment, remove_backend, Backend};
use crate::error::{Error, Location, Result};
use crate::header::{self, Header, Kind, Spec, PAYLOAD_OFFSET, STATE_READY};
use crate::mpmc::MpmcRing;
use crate::region::{Region, REGION_ALIGN};
use crate::shared::Shared;
use crate::spsc::SpscRing;

/// Published number of directory entries (Release after an entry is complete).
const COUNT: usize = PAYLOAD_OFFSET;
/// Offset of the next free arena byte (changed only under the store's lock).
const ARENA_NEXT: usize = PAYLOAD_OFFSET + 8;
/// Where the directory starts: one 128-byte record per entry.
const DIRECTORY: usize = PAYLOAD_OFFSET + 128;
/// Bytes per directory record.
const RECORD: usize = 128;
/// Longest entry name, in bytes.
pub const MAX_NAME: usize = 48;
/// The type name the store's own header records.
const STORE_TYPE: &str = "shm-typed store v1";

/// A directory record, as the bytes in the segment lay it out.
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 48 | name (UTF-8) |
/// | 48 | 1 | name length |
/// | 49 | 1 | kind code (1 object, 2 spsc ring, 3 mpmc ring) |
/// | 56 | 8 | offset of the entry's segment from the store's start |
/// | 64 | 8 | length of the entry's segment |
#[derive(Debug, Clone)]
struct Record {
    name: String,
    kind: Kind,
    offset: usize,
    len: usize,
}

/// What [`Store::entries`] reports for each entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The entry's name.
    pub name: String,
    /// Object, SPSC ring or MPMC ring.
    pub kind: Kind,
    /// The stable type name its header records.
    pub type_name: String,
    /// Size of the value (or of one element).
    pub size: u64,
    /// Ring capacity in elements; 0 for objects.
    pub capacity: u64,
}

/// Many named, typed objects and rings in one segment, on any backend.
///
/// A directory of up to `entries` records sits after the store's header; each
/// entry is a complete segment of its own (header, lock, payload) carved from
/// the arena that follows, page-aligned. Opening an entry therefore checks its
/// type exactly as opening a segment does, and an error names the entry.
/// Entries are created under the store's lock and published with a Release
/// store of the entry count, so readers never see a half-made entry; a process
/// that dies while creating one leaves only unused arena space.
///
/// ```
/// use shm_typed::{Location, Store};
///
/// let store = Store::create(Location::Private, 16, 1 << 20)?;
/// store.remove()?;                                  // freed when the last process unmaps it
/// let config = store.object::<[u32; 4]>("config", [1, 2, 3, 4])?;
/// let ticks = store.spsc::<u64>("ticks", 1024)?;
/// ticks.producer()?.push(7).unwrap();
///
/// // Any process: the same names give the same objects, type-checked.
/// assert_eq!(store.object::<[u32; 4]>("config", [0; 4])?.load()?, [1, 2, 3, 4]);
/// assert!(store.object::<u64>("config", 0).is_err()); // wrong type: an error naming the entry
/// let names: Vec<String> = store.entries()?.into_iter().map(|e| e.name).collect();
/// assert_eq!(names, ["config", "ticks"]);
/// # drop(config);
/// # Ok::<(), shm_typed::Error>(())
/// ```
pub struct Store {
    region: Arc<Region>,
    backend: Backend,
    location: Location,
    entries: u64,
    arena_start: usize,
}

fn arena_start(entries: u64) -> Option<usize> {
    let directory_end = (entries as usize)
        .checked_mul(RECORD)?
        .checked_add(DIRECTORY)?;
    Some(directory_end.next_multiple_of(REGION_ALIGN))
}

fn spec(entries: u64, segment_len: usize) -> Spec {
    Spec {
        kind: Kind::Store,
        payload_offset: PAYLOAD_OFFSET as u64,
        payload_size: (segment_len - PAYLOAD_OFFSET) as u64,
        payload_align: 8,
        element_size: RECORD as u32,
        capacity: entries,
        type_name: STORE_TYPE.to_owned(),
    }
}

/// Checks a name: 1 to 48 bytes of letters, digits and `-_./:`.
fn check_name(location: &Location, name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_NAME {
        Some(format!(
            "it is {} bytes long, the limit is {MAX_NAME}",
            name.len()
        ))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_./:".contains(*c)))
            .map(|c| format!("{c:?} is not allowed (letters, digits and -_./: are)"))
    };
    match why {
        Some(why) => Err(Error::InvalidName {
            location: location.clone(),
            name: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

impl Store {
    /// Creates a store with room for `entries` directory records and
    /// `arena_bytes` of entry space (each entry takes its size rounded up to a
    /// 4 KiB page).
    pub fn create(
        location: impl Into<Location>,
        entries: u64,
        arena_bytes: usize,
    ) -> Result<Store> {
        let location = location.into();
        let start = arena_start(entries).ok_or_else(|| Error::Unsupported {
            location: location.clone(),
            what: format!("{entries} entries is too many"),
        })?;
        let len = start + arena_bytes.next_multiple_of(REGION_ALIGN);
        let (region, backend, location) =
            create_segment(&location, &spec(entries, len), Mode::OWNER_RW, |region| {
                region.write_bytes(ARENA_NEXT, &(start as u64).to_ne_bytes());
            })?;
        Ok(Store::from_parts(region, backend, location, entries, start))
    }

    /// Makes a store in a blank region (tests, single process).
    pub fn create_in(region: Region, entries: u64) -> Result<Store> {
        let start = arena_start(entries)
            .filter(|&start| start < region.len())
            .ok_or_else(|| Error::TooSmall {
                location: Location::Heap,
                needed: arena_start(entries).unwrap_or(usize::MAX),
                found: region.len(),
            })?;
        let len = region.len();
        header::initialize(&region, &Location::Heap, &spec(entries, len), |region| {
            region.write_bytes(ARENA_NEXT, &(start as u64).to_ne_bytes());
        })?;
        Ok(Store::from_parts(
            region,
            Backend::Heap,
            Location::Heap,
            entries,
            start,
        ))
    }

    /// Opens the store at `location`; its size and directory capacity come from
    /// its header, which is validated like any other.
    pub fn open(location: impl Into<Location>) -> Result<Store> {
        let location = location.into();
        // First open with the smallest plausible spec to read the header's own
        // figures, then validate fully against them.
        let (probe, _, _) = crate::backend::open_backend(
            &location,
            shm_sys::sysv::Access::ReadWrite,
            PAYLOAD_OFFSET,
            Duration::from_secs(1),
        )?;
        let header = wait_for_header(&probe, &location)?;
        drop(probe);
        let entries = header.layout.capacity;
        let len = header.segment_len as usize;
        let start = arena_start(entries)
            .filter(|&start| start <= len && len >= PAYLOAD_OFFSET)
            .ok_or_else(|| Error::Corrupted {
                location: location.clone(),
                what: format!("a store of {entries} entries cannot fit {len} bytes"),
            })?;
        let (region, backend) =
            open_segment(&location, &spec(entries, len), Duration::from_secs(1))?;
        Ok(Store::from_parts(region, backend, location, entries, start))
    }

    fn from_parts(
        region: Region,
        backend: Backend,
        location: Location,
        entries: u64,
        arena_start: usize,
    ) -> Store {
        Store {
            region: Arc::new(region),
            backend,
            location,
            entries,
            arena_start,
        }
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        let pointer = self
            .region
            .pointer(offset, 8, 8)
            .expect("store control words are inside the header page");
        // SAFETY: in bounds and 8-aligned (checked); accessed only atomically.
        unsafe { AtomicU64::from_ptr(pointer.cast()) }
    }

    /// Where the store is ([`Location::Id`] for one created as private).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The region holding the store.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Removes the store's segment (`IPC_RMID` or `shm_unlink`).
    pub fn remove(&self) -> Result<()> {
        remove_backend(&self.backend)
    }

    fn corrupted(&self, what: String) -> Error {
        Error::Corrupted {
            location: self.location.clone(),
            what,
        }
    }

    /// The published records, each read once and validated.
    fn records(&self) -> Result<Vec<Record>> {
        let count = self.word(COUNT).load(Ordering::Acquire);
        if count > self.entries {
            return Err(self.corrupted(format!(
                "{count} entries in a directory of {}",
                self.entries
            )));
        }
        (0..count as usize)
            .map(|index| self.record(index))
            .collect()
    }

    fn record(&self, index: usize) -> Result<Record> {
        let mut bytes = [0u8; RECORD];
        self.region
            .read_bytes(DIRECTORY + index * RECORD, &mut bytes);
        let name_len = usize::from(bytes[48]).min(MAX_NAME);
        let name = std::str::from_utf8(&bytes[..name_len])
            .map_err(|_| self.corrupted(format!("entry {index} has a name that is not UTF-8")))?
            .to_owned();
        let kind = Kind::from_code(u32::from(bytes[49]))
            .filter(|kind| *kind != Kind::Store)
            .ok_or_else(|| self.corrupted(format!("entry {name:?} has kind code {}", bytes[49])))?;
        let word = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_ne_bytes(word) as usize
        };
        let (offset, len) = (word(56), word(64));
        let fits = offset >= self.arena_start
            && offset % REGION_ALIGN == 0
            && len > 0
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.region.len());
        if !fits {
            return Err(self.corrupted(format!(
                "entry {name:?} claims bytes {offset}..+{len} of a {}-byte store",
                self.region.len()
            )));
        }
        Ok(Record {
            name,
            kind,
            offset,
            len,
        })
    }

    /// The entry's own segment, as a region.
    fn part(&self, record: &Record) -> Result<Region> {
        Region::part(&self.region, record.offset, record.len)
            .ok_or_else(|| self.corrupted(format!("entry {:?} is out of bounds", record.name)))
    }

    fn entry_error(&self, name: &str, source: Error) -> Error {
        Error::Entry {
            location: self.location.clone(),
            name: name.to_owned(),
            source: Box::new(source),
        }
    }

    /// Finds `name`, or creates it with `len` bytes via `make`; then opens it
    /// with `open`. Creation happens under the store's lock.
    fn entry<R>(
        &self,
        name: &str,
        kind: Kind,
        len: usize,
        make: impl FnOnce(Region) -> Result<R>,
        open: impl Fn(Region) -> Result<R>,
    ) -> Result<R> {
        check_name(&self.location, name)?;
        if let Some(record) = self.records()?.into_iter().find(|r| r.name == name) {
            return open(self.part(&record)?).map_err(|error| self.entry_error(name, error));
        }
        let mutex = header::lock_of(&self.region);
        let acquired = mutex
            .acquire(Some(Duration::from_secs(10)))
            .map_err(|failure| self.corrupted(format!("store lock: {failure:?}")))?;
        if acquired.owner_died {
            // A creator died under the lock. Entries are published last, so the
            // directory is consistent; at worst some arena space is lost.
            mutex.mark_consistent();
        }
        let result = self.create_locked(name, kind, len, make, &open);
        mutex.release();
        result
    }

    fn create_locked<R>(
        &self,
        name: &str,
        kind: Kind,
        len: usize,
        make: impl FnOnce(Region) -> Result<R>,
        open: &impl Fn(Region) -> Result<R>,
    ) -> Result<R> {
        let records = self.records()?;
        // Someone may have created it while we waited for the lock.
        if let Some(record) = records.iter().find(|r| r.name == name) {
            return open(self.part(record)?).map_err(|error| self.entry_error(name, error));
        }
        if records.len() as u64 >= self.entries {
            return Err(Error::StoreFull {
                location: self.location.clone(),
                name: name.to_owned(),
                what: format!("the directory holds {} entries", self.entries),
            });
        }
        let next = self.word(ARENA_NEXT).load(Ordering::Acquire) as usize;
        let size = len.next_multiple_of(REGION_ALIGN);
        let end = next
            .checked_add(size)
            .filter(|&end| end <= self.region.len());
        let (Some(end), true) = (end, next >= self.arena_start && next % REGION_ALIGN == 0) else {
            return Err(Error::StoreFull {
                location: self.location.clone(),
                name: name.to_owned(),
                what: format!(
                    "{size} more bytes do not fit the arena ({} of {} bytes used)",
                    next.saturating_sub(self.arena_start),
                    self.region.len() - self.arena_start
                ),
            });
        };
        let record = Record {
            name: name.to_owned(),
            kind,
            offset: next,
            len: size,
        };
        let made = make(self.part(&record)?).map_err(|error| self.entry_error(name, error))?;
        let mut bytes = [0u8; RECORD];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        bytes[48] = name.len() as u8;
        bytes[49] = kind as u8;
        bytes[56..64].copy_from_slice(&(next as u64).to_ne_bytes());
        bytes[64..72].copy_from_slice(&(size as u64).to_ne_bytes());
        self.region
            .write_bytes(DIRECTORY + records.len() * RECORD, &bytes);
        self.word(ARENA_NEXT).store(end as u64, Ordering::Release);
        // Publish last: readers that see the count see the record and the
        // entry's initialised header.
        self.word(COUNT)
            .store(records.len() as u64 + 1, Ordering::Release);
        Ok(made)
    }

    /// The object called `name`, created holding `init` if there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Entry`] naming the entry when it holds another type or kind;
    /// [`Error::InvalidName`]; [`Error::StoreFull`].
    pub fn object<T: Pod>(&self, name: &str, init: T) -> Result<Shared<T>> {
        let len = PAYLOAD_OFFSET + std::mem::size_of::<T>();
        self.entry(
            name,
            Kind::Object,
            len,
            |region| Shared::options().create_in(region, init),
            |region| Shared::options().open_in(region),
        )
    }

    /// The single-producer single-consumer ring called `name`, created with
    /// `capacity` slots if there is none.
    pub fn spsc<T: Pod>(&self, name: &str, capacity: u64) -> Result<SpscRing<T>> {
        let len = SpscRing::<T>::segment_len(&self.location, capacity)?;
        self.entry(
            name,
            Kind::SpscRing,
            len,
            |region| SpscRing::create_in(region, capacity),
            |region| SpscRing::open_in(region, capacity),
        )
    }

    /// The multi-producer multi-consumer ring called `name`, created with
    /// `capacity` slots if there is none.
    pub fn mpmc<T: Pod>(&self, name: &str, capacity: u64) -> Result<MpmcRing<T>> {
        let len = MpmcRing::<T>::segment_len(&self.location, capacity)?;
        self.entry(
            name,
            Kind::MpmcRing,
            len,
            |region| MpmcRing::create_in(region, capacity),
            |region| MpmcRing::open_in(region, capacity),
        )
    }

    /// The existing entry `name`, opened with `open` (never creates).
    fn lookup<R>(&self, name: &str, open: impl FnOnce(Region) -> Result<R>) -> Result<R> {
        check_name(&self.location, name)?;
        let record = self
            .records()?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::EntryNotFound {
                location: self.location.clone(),
                name: name.to_owned(),
            })?;
        open(self.part(&record)?).map_err(|error| self.entry_error(name, error))
    }

    /// The existing object called `name` (never creates).
    ///
    /// # Errors
    ///
    /// [`Error::EntryNotFound`] if there is none; otherwise as [`Store::object`].
    pub fn get_object<T: Pod>(&self, name: &str) -> Result<Shared<T>> {
        self.lookup(name, |region| Shared::options().open_in(region))
    }

    /// The existing SPSC ring called `name`, which must have `capacity` slots.
    pub fn get_spsc<T: Pod>(&self, name: &str, capacity: u64) -> Result<SpscRing<T>> {
        self.lookup(name, |region| SpscRing::open_in(region, capacity))
    }

    /// The existing MPMC ring called `name`, which must have `capacity` slots.
    pub fn get_mpmc<T: Pod>(&self, name: &str, capacity: u64) -> Result<MpmcRing<T>> {
        self.lookup(name, |region| MpmcRing::open_in(region, capacity))
    }

    /// Every entry: name, kind, type name, size and capacity (read from each
    /// entry's own header).
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        self.records()?
            .into_iter()
            .map(|record| {
                let region = self.part(&record)?;
                let header = Header::read_from(&region)
                    .filter(|h| h.state == STATE_READY)
                    .ok_or_else(|| {
                        self.corrupted(format!("entry {:?} has no header", record.name))
                    })?;
                let description = header.type_description();
                Ok(EntryInfo {
                    name: record.name,
                    kind: record.kind,
                    type_name: description.name,
                    size: description.size,
                    capacity: description.capacity,
                })
            })
            .collect()
    }
}

/// The entries of the store held by `region`, which may be a read-only
/// attachment: for tools such as `shm inspect`. Only reads.
///
/// # Errors
///
/// [`Error::WrongKind`] if the region holds something else (or nothing of
/// ours); [`Error::Corrupted`] for an impossible directory.
pub fn store_entries(region: Region) -> Result<Vec<EntryInfo>> {
    let header = Header::read_from(&region)
        .filter(|header| header.magic == header::MAGIC && header.kind == Kind::Store as u32)
        .ok_or_else(|| Error::WrongKind {
            location: Location::Heap,
            expected: Kind::Store.name().into(),
            found: "something else".into(),
        })?;
    let entries = header.layout.capacity;
    let start = arena_start(entries)
        .filter(|&start| start <= region.len())
        .ok_or_else(|| Error::Corrupted {
            location: Location::Heap,
            what: format!(
                "a store of {entries} entries cannot fit {} bytes",
                region.len()
            ),
        })?;
    Store::from_parts(region, Backend::Heap, Location::Heap, entries, start).entries()
}

/// Waits (bounded) for a segment's creator and copies its header.
fn wait_for_header(region: &Region, location: &Location) -> Result<Header> {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let header = Header::read_from(region).ok_or_else(|| Error::TooSmall {
            location: location.clone(),
            needed: PAYLOAD_OFFSET,
            found: region.len(),
        })?;
        if header.state == STATE_READY || std::time::Instant::now() >= deadline {
            // Not ready by the deadline: the full open reports why.
            return Ok(header);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .field("entries", &self.entries)
            .finish()
    }
}
