//! [`Store`]: many named, typed objects and rings in one segment.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::lock::LockFailure;
use crate::ring::mpmc::MpmcRing;
use crate::ring::spsc::SpscRing;
use crate::segment::format::{Header, Kind, State, PAYLOAD_OFFSET};

use crate::segment::region::{Region, REGION_ALIGN};
use crate::segment::Segment;
use crate::shared::{Shared, SharedOptions};

mod directory;
mod options;

pub use options::StoreOptions;

use directory::{check_name, Layout, Record};

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
/// Every figure the store reads back from its segment (directory capacity,
/// length, entry count, arena offsets, records) is checked before use: a
/// segment a peer scribbled on gives [`Error::Corrupted`], never a panic or an
/// access outside the segment. How long the store waits, and for what, is set
/// with [`Store::options`].
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
    segment: Segment,
    layout: Layout,
    options: StoreOptions,
}

impl Store {
    /// Options: mode and timeouts; see `StoreOptions` for the defaults,
    /// which [`create`](Store::create), [`open`](Store::open) and
    /// [`create_in`](Store::create_in) use.
    pub fn options() -> StoreOptions {
        StoreOptions::default()
    }

    /// Creates a store with room for `entries` directory records and
    /// `arena_bytes` of entry space (each entry takes its size rounded up to a
    /// 4 KiB page), with default options.
    pub fn create(
        location: impl Into<Location>,
        entries: u64,
        arena_bytes: usize,
    ) -> Result<Store> {
        Store::options().create(location, entries, arena_bytes)
    }

    /// Makes a store in a blank region (tests, single process), with default
    /// options.
    pub fn create_in(region: Region, entries: u64) -> Result<Store> {
        Store::options().create_in(region, entries)
    }

    /// Opens the store at `location`, with default options; its size and
    /// directory capacity come from its header, which is validated like any
    /// other.
    pub fn open(location: impl Into<Location>) -> Result<Store> {
        Store::options().open(location)
    }

    /// Opens the store a region holds, with default options.
    pub fn open_in(region: Region) -> Result<Store> {
        Store::options().open_in(region)
    }

    /// A store control word. Only called for [`COUNT`] and [`ARENA_NEXT`],
    /// which lie below the arena start, itself at most the region's length
    /// (checked when the layout was made).
    fn word(&self, offset: usize) -> Result<&AtomicU64> {
        let pointer = self
            .segment
            .region()
            .pointer(offset, 8, 8)
            .ok_or_else(|| self.corrupted(format!("no control word at {offset}")))?;
        // SAFETY: in bounds and 8-aligned (checked); accessed only atomically.
        Ok(unsafe { AtomicU64::from_ptr(pointer.cast()) })
    }

    /// Where the store is ([`Location::Id`] for one created as private).
    pub fn location(&self) -> &Location {
        self.segment.location()
    }

    /// The region holding the store.
    pub fn region(&self) -> &Region {
        self.segment.region()
    }

    /// The options the store was made or opened with.
    pub fn store_options(&self) -> &StoreOptions {
        &self.options
    }

    /// Removes the store's segment (`IPC_RMID` or `shm_unlink`).
    pub fn remove(&self) -> Result<()> {
        self.segment.remove()
    }

    fn corrupted(&self, what: String) -> Error {
        self.segment.corrupted(what)
    }

    /// The published records, each read once and validated.
    fn records(&self) -> Result<Vec<Record>> {
        let count = self.word(COUNT)?.load(Ordering::Acquire);
        if count > self.layout.entries {
            return Err(self.corrupted(format!(
                "{count} entries in a directory of {}",
                self.layout.entries
            )));
        }
        // count <= entries, and entries records fit below the arena start.
        (0..count).map(|index| self.record(index)).collect()
    }

    fn record(&self, index: u64) -> Result<Record> {
        let mut bytes = [0u8; RECORD];
        let at = usize::try_from(index)
            .ok()
            .and_then(|index| index.checked_mul(RECORD))
            .and_then(|offset| offset.checked_add(DIRECTORY))
            .filter(|&at| self.segment.region().try_read_bytes(at, &mut bytes));
        if at.is_none() {
            return Err(self.corrupted(format!("directory record {index} is out of bounds")));
        }
        Record::decode(
            &bytes,
            index,
            self.layout.arena_start,
            self.segment.region().len(),
        )
        .map_err(|what| self.corrupted(what))
    }

    /// The entry's own segment, as a region.
    fn part(&self, record: &Record) -> Result<Region> {
        Region::part(self.segment.shared_region(), record.offset, record.len)
            .ok_or_else(|| self.corrupted(format!("entry {:?} is out of bounds", record.name)))
    }

    fn entry_error(&self, name: &str, source: Error) -> Error {
        Error::Entry {
            location: self.segment.location().clone(),
            name: name.to_owned(),
            source: Box::new(source),
        }
    }

    /// Why the store's lock was not taken, for creating entry `name`.
    #[cold]
    fn lock_error(&self, name: &str, failure: LockFailure) -> Error {
        let source = failure.into_error(self.segment.location().clone(), self.options.lock_timeout);
        self.entry_error(name, source)
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
        check_name(self.segment.location(), name)?;
        if let Some(record) = self.records()?.into_iter().find(|r| r.name == name) {
            return open(self.part(&record)?).map_err(|error| self.entry_error(name, error));
        }
        let mutex = self.segment.lock();
        let acquired = mutex
            .acquire(self.options.lock_timeout)
            .map_err(|failure| self.lock_error(name, failure))?;
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
        // records.len() <= entries (checked in records()).
        let index = records.len();
        if index as u64 >= self.layout.entries {
            return Err(Error::StoreFull {
                location: self.segment.location().clone(),
                name: name.to_owned(),
                what: format!("the directory holds {} entries", self.layout.entries),
            });
        }
        let next_word = self.word(ARENA_NEXT)?;
        let next_raw = next_word.load(Ordering::Acquire);
        let next = usize::try_from(next_raw)
            .ok()
            .filter(|&next| next >= self.layout.arena_start && next % REGION_ALIGN == 0)
            .ok_or_else(|| {
                self.corrupted(format!(
                    "the next free arena byte is {next_raw}, not a page at or after {}",
                    self.layout.arena_start
                ))
            })?;
        let size = len.checked_next_multiple_of(REGION_ALIGN);
        let end = size
            .and_then(|size| next.checked_add(size))
            .filter(|&end| end <= self.segment.region().len());
        let (Some(size), Some(end)) = (size, end) else {
            return Err(Error::StoreFull {
                location: self.segment.location().clone(),
                name: name.to_owned(),
                what: format!(
                    "{len} more bytes do not fit the arena ({} of {} bytes used)",
                    next.saturating_sub(self.layout.arena_start),
                    self.segment
                        .region()
                        .len()
                        .saturating_sub(self.layout.arena_start)
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
        // index < entries: the record lies inside the directory.
        self.segment
            .region()
            .write_bytes(DIRECTORY + index * RECORD, &record.encode());
        next_word.store(end as u64, Ordering::Release);
        // Publish last: readers that see the count see the record and the
        // entry's initialised header.
        self.word(COUNT)?.store(index as u64 + 1, Ordering::Release);
        Ok(made)
    }

    /// What the handles of entry `name` call themselves in errors.
    fn entry_location(&self, name: &str) -> Location {
        Location::Entry {
            store: Box::new(self.segment.location().clone()),
            name: name.to_owned(),
        }
    }

    /// How this store's objects are made and opened.
    fn object_options<T: Pod>(&self) -> SharedOptions<T> {
        Shared::options()
            .init_timeout(self.options.init_timeout)
            .lock_timeout(self.options.entry_lock_timeout)
    }

    /// The object called `name`, created holding `init` if there is none. Its
    /// lock timeout is the store's `entry_lock_timeout` (see [`Store::options`]).
    ///
    /// # Errors
    ///
    /// [`Error::Entry`] naming the entry when it holds another type or kind,
    /// or when the store's lock was not taken in time (around
    /// [`Error::LockTimeout`]); [`Error::InvalidName`]; [`Error::StoreFull`].
    pub fn object<T: Pod>(&self, name: &str, init: T) -> Result<Shared<T>> {
        let len = PAYLOAD_OFFSET.saturating_add(std::mem::size_of::<T>());
        self.entry(
            name,
            Kind::Object,
            len,
            |region| {
                self.object_options()
                    .create_in_at(region, self.entry_location(name), init)
            },
            |region| {
                self.object_options()
                    .open_in_at(region, self.entry_location(name))
            },
        )
    }

    /// The single-producer single-consumer ring called `name`, created with
    /// `capacity` slots if there is none.
    pub fn spsc<T: Pod>(&self, name: &str, capacity: u64) -> Result<SpscRing<T>> {
        let len = SpscRing::<T>::segment_len(self.segment.location(), capacity)?;
        let timeout = self.options.init_timeout;
        self.entry(
            name,
            Kind::SpscRing,
            len,
            |region| SpscRing::create_in_at(region, self.entry_location(name), capacity),
            |region| SpscRing::open_in_at(region, self.entry_location(name), capacity, timeout),
        )
    }

    /// The multi-producer multi-consumer ring called `name`, created with
    /// `capacity` slots if there is none.
    pub fn mpmc<T: Pod>(&self, name: &str, capacity: u64) -> Result<MpmcRing<T>> {
        let len = MpmcRing::<T>::segment_len(self.segment.location(), capacity)?;
        let timeout = self.options.init_timeout;
        self.entry(
            name,
            Kind::MpmcRing,
            len,
            |region| MpmcRing::create_in_at(region, self.entry_location(name), capacity),
            |region| MpmcRing::open_in_at(region, self.entry_location(name), capacity, timeout),
        )
    }

    /// The existing entry `name`, opened with `open` (never creates).
    fn lookup<R>(&self, name: &str, open: impl FnOnce(Region) -> Result<R>) -> Result<R> {
        check_name(self.segment.location(), name)?;
        let record = self
            .records()?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::EntryNotFound {
                location: self.segment.location().clone(),
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
        self.lookup(name, |region| {
            self.object_options()
                .open_in_at(region, self.entry_location(name))
        })
    }

    /// The existing SPSC ring called `name`, which must have `capacity` slots.
    pub fn get_spsc<T: Pod>(&self, name: &str, capacity: u64) -> Result<SpscRing<T>> {
        let timeout = self.options.init_timeout;
        self.lookup(name, |region| {
            SpscRing::open_in_at(region, self.entry_location(name), capacity, timeout)
        })
    }

    /// The existing MPMC ring called `name`, which must have `capacity` slots.
    pub fn get_mpmc<T: Pod>(&self, name: &str, capacity: u64) -> Result<MpmcRing<T>> {
        let timeout = self.options.init_timeout;
        self.lookup(name, |region| {
            MpmcRing::open_in_at(region, self.entry_location(name), capacity, timeout)
        })
    }

    /// Every entry: name, kind, type name, size and capacity (read from each
    /// entry's own header).
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        self.records()?
            .into_iter()
            .map(|record| {
                let region = self.part(&record)?;
                let header = Header::read_from(&region)
                    .filter(|h| h.state() == Some(State::Ready))
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
/// attachment: for tools such as `shm inspect`. Only reads, and does not wait
/// for a creator.
///
/// # Errors
///
/// [`Error::WrongKind`] if the region holds something else (or nothing of
/// ours); [`Error::UnsupportedVersion`], [`Error::IncompatiblePlatform`],
/// [`Error::LengthMismatch`] as for an open; [`Error::Corrupted`] for an
/// impossible directory.
pub fn store_entries(region: Region) -> Result<Vec<EntryInfo>> {
    let location = Location::Heap;
    let (segment, layout) = Segment::view_derived(
        region,
        location.clone(),
        Kind::Store,
        Layout::derive(&location),
    )?;
    StoreOptions::default().store(segment, layout).entries()
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", self.segment.location())
            .field("entries", &self.layout.entries)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use std::time::Duration;

    /// This thread's id, as the lock records it.
    fn tid() -> u32 {
        u32::try_from(rustix::thread::gettid().as_raw_nonzero().get()).unwrap()
    }

    /// Runs `check` while another thread, alive, holds `lock` (taken with
    /// `take`, given back with `give_back`); `check` gets that thread's id.
    fn while_held<L: Sync>(
        lock: &L,
        take: impl FnOnce(&L) -> Box<dyn FnOnce() + '_> + Send,
        check: impl FnOnce(u32),
    ) {
        let (held, holder) = mpsc::channel();
        let (done, finish) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let give_back = take(lock);
                held.send(tid()).unwrap();
                // Until the check is over (or failed: the sender is dropped).
                let _ = finish.recv();
                give_back();
            });
            let holder = holder.recv().unwrap();
            check(holder);
            drop(done);
        });
    }

    // A real segment (the location in the error is the point): not under
    // Miri, which cannot call shmget; the normal suite runs it.
    #[cfg(not(miri))]
    #[test]
    fn store_lock_timeout_names_the_store_the_entry_and_the_live_holder() {
        let timeout = Duration::from_millis(50);
        let store = Store::options()
            .lock_timeout(Some(timeout))
            .create(Location::Private, 4, 1 << 14)
            .unwrap();
        store.remove().unwrap(); // gone when unmapped, also if this test fails
        let location = store.location().clone();
        while_held(
            &store,
            |store| {
                let mutex = store.segment.lock();
                assert!(!mutex.acquire(None).unwrap().owner_died);
                Box::new(move || mutex.release())
            },
            |holder| {
                let started = std::time::Instant::now();
                let error = store.object::<u64>("late", 1).unwrap_err();
                assert!(started.elapsed() >= timeout);
                let text = error.to_string();
                match error {
                    Error::Entry {
                        location: at,
                        name,
                        source,
                    } => {
                        assert_eq!((at, name.as_str()), (location.clone(), "late"));
                        match *source {
                            Error::LockTimeout {
                                location: inner,
                                waited,
                                holder: found,
                            } => assert_eq!(
                                (inner, waited, found),
                                (location.clone(), timeout, holder)
                            ),
                            other => panic!("expected LockTimeout inside, got {other:?}"),
                        }
                    }
                    other => panic!("expected a lock timeout of entry \"late\", got {other:?}"),
                }
                assert!(
                    text.contains("\"late\"")
                        && text.contains(&format!("tid {holder}"))
                        && text.contains(&location.to_string()),
                    "{text}"
                );
            },
        );
        // Free again: the entry is made.
        assert_eq!(store.object::<u64>("late", 1).unwrap().load().unwrap(), 1);
    }

    // A real segment (the location in the error is the point): not under
    // Miri, which cannot call shmget; the normal suite runs it.
    #[cfg(not(miri))]
    #[test]
    fn entry_lock_timeout_applies_to_the_objects_a_store_hands_out() {
        let timeout = Duration::from_millis(50);
        let store = Store::options()
            .entry_lock_timeout(Some(timeout))
            .create(Location::Private, 4, 1 << 14)
            .unwrap();
        store.remove().unwrap();
        let object = store.object::<u64>("counter", 5).unwrap();
        while_held(
            &object,
            |object| {
                let guard = object.lock().unwrap();
                Box::new(move || drop(guard))
            },
            |holder| {
                for handle in [
                    store.get_object::<u64>("counter").unwrap(),
                    store.object::<u64>("counter", 0).unwrap(),
                ] {
                    match handle.load() {
                        Err(Error::LockTimeout {
                            waited,
                            holder: found,
                            location,
                        }) => {
                            assert_eq!((waited, found), (timeout, holder));
                            assert_eq!(
                                location,
                                Location::Entry {
                                    store: Box::new(store.location().clone()),
                                    name: "counter".into()
                                }
                            );
                            let text = Error::LockTimeout {
                                location,
                                waited,
                                holder,
                            }
                            .to_string();
                            assert!(
                                text.contains("entry \"counter\" of SysV segment id"),
                                "{text}"
                            );
                            assert!(text.contains(&format!("tid {holder}")), "{text}");
                        }
                        other => panic!("expected a lock timeout, got {other:?}"),
                    }
                }
            },
        );
        assert_eq!(object.load().unwrap(), 5);
    }

    #[test]
    fn default_timeouts_are_the_documented_ones() {
        let options = Store::options();
        assert_eq!(options.lock_timeout, Some(Duration::from_secs(10)));
        assert_eq!(options.entry_lock_timeout, None);
        assert_eq!(options.init_timeout, Duration::from_secs(1));
        let store = Store::create_in(Region::heap(1 << 14), 2).unwrap();
        assert_eq!(
            store.store_options().lock_timeout,
            Some(StoreOptions::DEFAULT_LOCK_TIMEOUT)
        );
    }
}
