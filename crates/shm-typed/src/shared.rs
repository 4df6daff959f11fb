//! [`Shared<T>`]: one `Pod` value in a segment, under the segment's lock.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use bytemuck::Pod;
use shm_sys::sysv::{Access, SegmentInfo};
use shm_sys::Mode;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::lock::{Holder, LockFailure, ShmMutex};
use crate::segment::format::{Kind, PAYLOAD_OFFSET};
use crate::segment::header::{self, Spec};
use crate::segment::region::Region;
use crate::segment::{Opening, Segment};

/// How to create or open a [`Shared<T>`]: the type's stable name, permissions,
/// and how long to wait for a creator that is still initialising.
///
/// ```
/// use shm_typed::{Location, Shared};
///
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Config { rate: u64, depth: u32, flags: u32 }
///
/// let config = Shared::<Config>::options()
///     .type_name("Config v1")          // what peers must agree on
///     .create(Location::Private, Config { rate: 10, depth: 4, flags: 0 })?;
/// assert_eq!(config.load()?.rate, 10);
/// config.remove()?;
/// # Ok::<(), shm_typed::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SharedOptions<T> {
    type_name: Option<String>,
    mode: Mode,
    init_timeout: Duration,
    lock_timeout: Option<Duration>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod> SharedOptions<T> {
    fn new() -> Self {
        SharedOptions {
            type_name: None,
            mode: Mode::OWNER_RW,
            init_timeout: Duration::from_secs(1),
            lock_timeout: None,
            _type: PhantomData,
        }
    }

    /// The type's stable name, recorded in the header and checked on open.
    /// Default: [`default_type_name`](crate::default_type_name), the Rust type
    /// name without module paths.
    pub fn type_name(mut self, name: impl Into<String>) -> Self {
        self.type_name = Some(name.into());
        self
    }

    /// Permission bits of a new segment. Default `0o600`.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How long an opener waits for a creator that is still initialising.
    /// Default 1 s.
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// How long `load`, `store` and `update` wait for the lock. Default: no limit
    /// (a dead holder is still detected and taken over).
    pub fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    fn spec(&self) -> Result<Spec, String> {
        let align = std::mem::align_of::<T>();
        if align > 128 {
            return Err(format!("alignment {align} is above the supported 128"));
        }
        let size = std::mem::size_of::<T>();
        let element_size =
            u32::try_from(size).map_err(|_| format!("size {size} does not fit the header"))?;
        Ok(Spec {
            kind: Kind::Object,
            payload_offset: PAYLOAD_OFFSET as u64,
            payload_size: size as u64,
            payload_align: align as u32,
            element_size,
            capacity: 0,
            type_name: self
                .type_name
                .clone()
                .unwrap_or_else(header::default_type_name::<T>),

            schema: crate::schema::layout_of::<T>(),
            accepts_prefix: false,
        })
    }

    fn checked_spec(&self, location: &Location) -> Result<Spec> {
        self.spec().map_err(|what| Error::Unsupported {
            location: location.clone(),
            what,
        })
    }

    fn opening(&self, access: Access) -> Opening {
        Opening {
            mode: self.mode,
            access,
            init_timeout: self.init_timeout,
        }
    }

    /// Writes the value into a fresh segment.
    fn init(value: T) -> impl Fn(&Region) {
        move |region: &Region| region.write_bytes(PAYLOAD_OFFSET, bytemuck::bytes_of(&value))
    }

    /// Creates a new segment at `location` holding `value`. System V segments are
    /// created exclusively (`IPC_CREAT | IPC_EXCL`); POSIX objects with `O_EXCL`.
    ///
    /// # Errors
    ///
    /// [`shm_sys::Error::AlreadyExists`] (inside [`Error::Sys`]) if the location is taken.
    pub fn create(&self, location: impl Into<Location>, value: T) -> Result<Shared<T>> {
        let location = location.into();
        let spec = self.checked_spec(&location)?;
        let segment = Segment::create(&location, &spec, self.mode, Self::init(value))?;
        Ok(Shared::from_segment(segment, self.lock_timeout))
    }

    /// Opens the existing segment at `location` for reading and writing, checking
    /// its header against `T`.
    ///
    /// # Errors
    ///
    /// One variant per failed check: [`Error::BadMagic`],
    /// [`Error::UnsupportedVersion`], [`Error::WrongKind`], [`Error::TypeMismatch`],
    /// [`Error::LengthMismatch`], [`Error::CreatorDied`], [`Error::InitTimeout`], ...
    pub fn open(&self, location: impl Into<Location>) -> Result<Shared<T>> {
        self.open_with(location.into(), Access::ReadWrite)
    }

    /// Opens read-only (`SHM_RDONLY` / `PROT_READ`): only [`Shared::load`] works,
    /// through the lock's seqlock counter, without taking the lock.
    pub fn open_read_only(&self, location: impl Into<Location>) -> Result<Shared<T>> {
        self.open_with(location.into(), Access::ReadOnly)
    }

    fn open_with(&self, location: Location, access: Access) -> Result<Shared<T>> {
        let mut spec = self.checked_spec(&location)?;
        // A reader may read a value whose type extends ours (more fields at
        // its end); a writer would not keep the fields it does not know.
        spec.accepts_prefix = matches!(access, Access::ReadOnly);
        let segment = Segment::open(&location, &spec, self.opening(access))?;
        Ok(Shared::from_segment(segment, self.lock_timeout))
    }

    /// Opens the segment at `location`, or creates it holding `value` if there is
    /// none. Of many processes racing here exactly one creates and initialises;
    /// the others wait for it and validate. The flag says whether this call created.
    ///
    /// A System V segment whose creator died before it was ready (killed while
    /// initialising) is removed and made afresh, again by exactly one of the
    /// racers, when the death is certain: the creator's pid was recorded in
    /// our pid namespace (or is the kernel's `shm_cpid`) and names no live
    /// process. Otherwise the open reports [`Error::CreatorDied`] or, for a
    /// creator in another pid namespace, [`Error::InitTimeout`]. POSIX objects
    /// are never taken over: [`Error::CreatorDied`].
    pub fn open_or_create(
        &self,
        location: impl Into<Location>,
        value: T,
    ) -> Result<(Shared<T>, bool)> {
        let location = location.into();
        let spec = self.checked_spec(&location)?;
        let (segment, created) = Segment::open_or_create(
            &location,
            &spec,
            self.opening(Access::ReadWrite),
            Self::init(value),
        )?;
        Ok((Shared::from_segment(segment, self.lock_timeout), created))
    }

    /// Initialises a blank heap (or other) region as a `Shared<T>`.
    pub fn create_in(&self, region: Region, value: T) -> Result<Shared<T>> {
        self.create_in_at(region, Location::Heap, value)
    }

    /// Opens a region that holds a `Shared<T>` (validating its header).
    pub fn open_in(&self, region: Region) -> Result<Shared<T>> {
        self.open_in_at(region, Location::Heap)
    }

    /// [`create_in`](SharedOptions::create_in) for a region that errors name
    /// as `location` (a store's entry).
    pub(crate) fn create_in_at(
        &self,
        region: Region,
        location: Location,
        value: T,
    ) -> Result<Shared<T>> {
        let spec = self.checked_spec(&location)?;
        let segment = Segment::create_in(region, location, &spec, Self::init(value))?;
        Ok(Shared::from_segment(segment, self.lock_timeout))
    }

    /// [`open_in`](SharedOptions::open_in) for a region that errors name as
    /// `location` (a store's entry).
    pub(crate) fn open_in_at(&self, region: Region, location: Location) -> Result<Shared<T>> {
        let spec = self.checked_spec(&location)?;
        let segment = Segment::open_in(region, location, &spec, self.init_timeout)?;
        Ok(Shared::from_segment(segment, self.lock_timeout))
    }
}

/// One `Pod` value in shared memory, found by key, path, id or name from any
/// process, checked against `T` on open, and guarded by a robust in-segment lock.
///
/// ```
/// use shm_typed::{Location, Shared};
///
/// let counter = Shared::<u64>::create(Location::Private, 0)?;
/// // Another process would open it with Shared::<u64>::open(Location::Id(id)).
/// let id = counter.location().clone();
/// let same = Shared::<u64>::open(id)?;
///
/// *counter.lock()? += 5;
/// same.update(|n| *n *= 2)?;
/// assert_eq!(counter.load()?, 10);
/// counter.remove()?;
/// # Ok::<(), shm_typed::Error>(())
/// ```
///
/// Dropping a `Shared` unmaps it; the segment stays until [`remove`](Shared::remove).
pub struct Shared<T> {
    /// The segment's lock, inside `region` (checked when the handle was made).
    mutex: NonNull<ShmMutex>,
    /// The value, inside `region`, aligned (checked when the handle was made).
    value: NonNull<T>,
    /// Whether the mapping is read-only (copied here: the hot paths ask on
    /// every call, and the region sits behind the segment's `Arc`).
    read_only: bool,
    segment: Segment,
    lock_timeout: Option<Duration>,
}

// SAFETY: the pointers point into `region`, which the handle owns and which is
// valid process-wide; the value is only touched under the lock (or through atomic
// copies), so a handle may move to another thread like a Mutex<T> may.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: shared use goes through the lock, which hands `&mut T` to one thread at
// a time: the Mutex<T> rule, Sync when T is Send.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T: Pod> Shared<T> {
    /// Wraps a segment checked against the spec: the lock and the value fit
    /// (`PAYLOAD_OFFSET + size_of::<T>() <= len`).
    fn from_segment(segment: Segment, lock_timeout: Option<Duration>) -> Shared<T> {
        let mutex = NonNull::from(segment.lock());
        let value = segment
            .region()
            .pointer(
                PAYLOAD_OFFSET,
                std::mem::size_of::<T>(),
                std::mem::align_of::<T>(),
            )
            .and_then(NonNull::new)
            .expect("the spec that was checked puts the payload inside the region");
        Shared {
            mutex,
            value: value.cast(),
            read_only: segment.region().is_read_only(),
            segment,
            lock_timeout,
        }
    }

    /// Options: type name, mode, timeouts.
    pub fn options() -> SharedOptions<T> {
        SharedOptions::new()
    }

    /// Creates a new segment holding `value`, with default options.
    pub fn create(location: impl Into<Location>, value: T) -> Result<Shared<T>> {
        Shared::options().create(location, value)
    }

    /// Opens an existing segment, with default options.
    pub fn open(location: impl Into<Location>) -> Result<Shared<T>> {
        Shared::options().open(location)
    }

    /// Opens an existing segment read-only, with default options.
    pub fn open_read_only(location: impl Into<Location>) -> Result<Shared<T>> {
        Shared::options().open_read_only(location)
    }

    /// Opens or creates, with default options; the flag says whether this call created.
    pub fn open_or_create(location: impl Into<Location>, value: T) -> Result<(Shared<T>, bool)> {
        Shared::options().open_or_create(location, value)
    }

    /// Where the segment is: for a segment created as [`Location::Private`], its
    /// [`Location::Id`], which other processes open.
    pub fn location(&self) -> &Location {
        self.segment.location()
    }

    /// The region holding the segment.
    pub fn region(&self) -> &Region {
        self.segment.region()
    }

    /// Gives up the handle and returns its region (to reopen a heap region with
    /// [`SharedOptions::open_in`], for example).
    pub fn into_region(self) -> Region {
        self.segment.into_region()
    }

    /// The segment's lock, inside the segment; for this crate's own use, which
    /// only loads from it on read-only handles.
    #[inline]
    fn raw_mutex(&self) -> &ShmMutex {
        // SAFETY: points into the region this handle owns (checked in from_parts);
        // ShmMutex is all atomics, so a shared reference is sound while other
        // processes change it.
        unsafe { self.mutex.as_ref() }
    }

    /// The segment's lock, for read-write handles. `None` for read-only ones:
    /// the lock's operations write to it, and an atomic write to read-only
    /// memory is undefined behaviour, not just a fault.
    pub fn mutex(&self) -> Option<&ShmMutex> {
        (!self.read_only).then(|| self.raw_mutex())
    }

    /// The thread holding the lock, if any (works on read-only handles too).
    pub fn lock_holder(&self) -> Option<Holder> {
        self.raw_mutex().holder()
    }

    /// Whether the lock is poisoned (works on read-only handles too).
    pub fn is_poisoned(&self) -> bool {
        self.raw_mutex().is_poisoned()
    }

    #[cold]
    #[inline(never)]
    fn lock_error(&self, failure: LockFailure, waited: Option<Duration>) -> Error {
        failure.into_error(self.segment.location().clone(), waited)
    }

    #[inline]
    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(self.read_only_error());
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn read_only_error(&self) -> Error {
        Error::ReadOnly {
            location: self.segment.location().clone(),
        }
    }

    /// Takes the lock, waiting as long as the options say (default: no limit; a
    /// dead holder is detected within about 10 ms and taken over).
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`], [`Error::LockTimeout`], [`Error::ForeignNamespace`],
    /// [`Error::ReadOnly`].
    #[inline]
    pub fn lock(&self) -> Result<SharedGuard<'_, T>> {
        if !self.read_only {
            if let Some(acquired) = self.raw_mutex().acquire_uncontended() {
                return Ok(SharedGuard::new(self, acquired.owner_died));
            }
        }
        self.lock_timeout(self.lock_timeout)
    }

    /// Takes the lock, waiting at most `timeout` (`None`: no limit).
    pub fn lock_timeout(&self, timeout: Option<Duration>) -> Result<SharedGuard<'_, T>> {
        self.writable()?;
        let acquired = self
            .raw_mutex()
            .acquire(timeout)
            .map_err(|failure| self.lock_error(failure, timeout))?;
        Ok(SharedGuard::new(self, acquired.owner_died))
    }

    /// Takes the lock if no live thread holds it.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] naming the holder, [`Error::Poisoned`], [`Error::ReadOnly`].
    pub fn try_lock(&self) -> Result<SharedGuard<'_, T>> {
        self.writable()?;
        let acquired = self
            .raw_mutex()
            .try_acquire()
            .map_err(|failure| self.lock_error(failure, None))?;
        Ok(SharedGuard::new(self, acquired.owner_died))
    }

    /// A copy of the value. Read-write handles take the lock; read-only handles
    /// copy without it, retrying until no writer was active (seqlock), for at most
    /// the lock timeout (default 1 s for read-only handles).
    #[inline]
    pub fn load(&self) -> Result<T> {
        if self.read_only {
            return self.load_without_lock();
        }
        let guard = self.lock()?;
        Ok(*guard)
    }

    /// The read-only path of [`load`](Shared::load): a seqlock copy.
    fn load_without_lock(&self) -> Result<T> {
        let timeout = self.lock_timeout.unwrap_or(Duration::from_secs(1));
        let mut value = T::zeroed();
        self.raw_mutex()
            .read_consistent(timeout, || {
                self.segment
                    .region()
                    .read_bytes(PAYLOAD_OFFSET, bytemuck::bytes_of_mut(&mut value));
            })
            .map_err(|failure| self.lock_error(failure, Some(timeout)))?;
        Ok(value)
    }

    /// Replaces the value under the lock.
    #[inline]
    pub fn store(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }

    /// Runs `change` on the value under the lock and returns its result.
    #[inline]
    pub fn update<R>(&self, change: impl FnOnce(&mut T) -> R) -> Result<R> {
        let mut guard = self.lock()?;
        Ok(change(&mut guard))
    }

    /// Clears poisoning after the caller repaired the value (or decided it is fine).
    pub fn reset_poison(&self) -> Result<()> {
        self.writable()?;
        self.raw_mutex().reset_poison();
        Ok(())
    }

    /// `IPC_STAT` of the System V segment behind this value.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for POSIX and heap segments.
    pub fn stat(&self) -> Result<SegmentInfo> {
        self.segment.stat()
    }

    /// Removes the segment (`IPC_RMID`, or `shm_unlink` for POSIX). Mappings,
    /// including this one, stay usable until dropped.
    pub fn remove(&self) -> Result<()> {
        self.segment.remove()
    }
}

impl<T> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("type", &std::any::type_name::<T>())
            .field("location", self.segment.location())
            .field("region", self.segment.region())
            .finish()
    }
}

/// Exclusive access to a [`Shared<T>`]'s value while the lock is held.
///
/// If the previous holder died ([`owner_died`](SharedGuard::owner_died)), the value
/// may be half-written: check or repair it, then call
/// [`mark_consistent`](SharedGuard::mark_consistent). Dropping the guard without
/// doing so poisons the lock.
pub struct SharedGuard<'a, T: Pod> {
    shared: &'a Shared<T>,
    owner_died: bool,
    /// The lock records this thread's id: the guard must stay on this thread.
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: Pod> SharedGuard<'a, T> {
    #[inline]
    fn new(shared: &'a Shared<T>, owner_died: bool) -> Self {
        SharedGuard {
            shared,
            owner_died,
            _not_send: PhantomData,
        }
    }

    /// Whether the previous holder died holding the lock.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Declares the value consistent after an owner-died acquisition.
    pub fn mark_consistent(&mut self) {
        if self.owner_died {
            self.shared.raw_mutex().mark_consistent();
            self.owner_died = false;
        }
    }
}

impl<T: Pod> Deref for SharedGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the value is in bounds and aligned (checked in from_parts); while
        // the guard lives this thread holds the segment's lock, which every
        // read-write peer takes before touching the value, so nobody writes it;
        // T: Pod, so any bytes there are a valid T.
        unsafe { self.shared.value.as_ref() }
    }
}

impl<T: Pod> DerefMut for SharedGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and the lock grants exclusive access; the mapping
        // is writable (lock() refuses read-only handles).
        unsafe { &mut *self.shared.value.as_ptr() }
    }
}

impl<T: Pod> Drop for SharedGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let mutex = self.shared.raw_mutex();
        if self.owner_died {
            mutex.poison();
        }
        mutex.release();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SharedGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedGuard")
            .field("value", &**self)
            .field("owner_died", &self.owner_died)
            .finish()
    }
}
