//! The segment header (format version 2) and the init protocol.
//!
//! See the crate documentation for the byte-by-byte layout.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Location, Result, TypeDescription};
use crate::lock::ShmMutex;
use crate::region::Region;
use crate::sys::{self, TaskState};

/// The first 8 bytes of every segment we write.
pub const MAGIC: [u8; 8] = *b"SHMTYPED";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// Written in native byte order; read back differently on a machine of the other order.
pub const BYTE_ORDER_MARK: u32 = 0x0102_0304;
/// Bytes of the header proper.
pub const HEADER_SIZE: usize = 256;
/// Where the segment's [`ShmMutex`] lives.
pub const LOCK_OFFSET: usize = 256;
/// Where a single value's payload starts (128-byte aligned).
pub const PAYLOAD_OFFSET: usize = LOCK_OFFSET + std::mem::size_of::<ShmMutex>();
/// Longest type name stored in the header (longer names are cut; the hash covers all).
pub const TYPE_NAME_CAPACITY: usize = 64;

/// `state`: all-zero bytes, nobody has claimed the segment yet.
pub const STATE_UNINITIALIZED: u32 = 0;
/// `state`: a creator is writing the header.
pub const STATE_INITIALIZING: u32 = 1;
/// `state`: header and payload are written (stored with Release).
pub const STATE_READY: u32 = 2;
/// `state`: the creator gave up; the segment is unusable.
pub const STATE_FAILED: u32 = 3;

const STATE_OFFSET: usize = 16;
const CREATOR_PID_OFFSET: usize = 144;

/// What a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Kind {
    /// One `Pod` value under a lock.
    Object = 1,
    /// A single-producer single-consumer ring.
    SpscRing = 2,
    /// A multi-producer multi-consumer ring.
    MpmcRing = 3,
    /// A store of named entries.
    Store = 4,
    /// A single-producer single-consumer ring whose sides never sleep.
    SpinningSpscRing = 5,
}

impl Kind {
    /// The kind with this header code.
    pub fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            1 => Kind::Object,
            2 => Kind::SpscRing,
            3 => Kind::MpmcRing,
            4 => Kind::Store,
            5 => Kind::SpinningSpscRing,
            _ => return None,
        })
    }

    /// A lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::SpscRing => "spsc ring",
            Kind::MpmcRing => "mpmc ring",
            Kind::Store => "store",
            Kind::SpinningSpscRing => "spinning spsc ring",
        }
    }
}

/// Payload size, alignment and type identity (bytes 32..144).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct LayoutDescriptor {
    /// Offset of the payload from the segment start.
    pub payload_offset: u64,
    /// Payload bytes.
    pub payload_size: u64,
    /// Payload alignment.
    pub payload_align: u32,
    /// Size of one element (the value itself for objects).
    pub element_size: u32,
    /// Ring capacity in elements; 0 for objects.
    pub capacity: u64,
    /// FNV-1a 64 of the full type name.
    pub type_name_hash: u64,
    /// `size_of::<usize>()` of the creator.
    pub pointer_width: u8,
    /// Bytes used in `type_name`.
    pub type_name_len: u8,
    /// Zero.
    pub reserved: [u8; 6],
    /// The type name, UTF-8, cut to 64 bytes.
    pub type_name: [u8; TYPE_NAME_CAPACITY],
}

/// Who made the segment (bytes 144..168).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct CreatorRecord {
    /// Process id (claimed atomically before anything else is written).
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Process start time, clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// Inode of `/proc/<pid>/ns/pid`.
    pub pid_namespace: u64,
}

/// The segment header, format version 2: the first 256 bytes of every segment.
/// All-zero bytes are the valid "uninitialised" header.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// A [`Kind`] code.
    pub kind: u32,
    /// Init state (`STATE_*`); an atomic in the segment, a snapshot here.
    pub state: u32,
    /// [`BYTE_ORDER_MARK`].
    pub byte_order: u32,
    /// Segment length the creator asked for.
    pub segment_len: u64,
    /// What the payload is.
    pub layout: LayoutDescriptor,
    /// Who made the segment.
    pub creator: CreatorRecord,
    /// Zero; room for later versions.
    pub reserved: [u8; 88],
}

const _: () = assert!(std::mem::size_of::<LayoutDescriptor>() == 112);
const _: () = assert!(std::mem::size_of::<CreatorRecord>() == 24);
const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(std::mem::offset_of!(Header, state) == STATE_OFFSET);
const _: () = assert!(std::mem::offset_of!(Header, segment_len) == 24);
const _: () = assert!(std::mem::offset_of!(Header, layout) == 32);
const _: () = assert!(std::mem::offset_of!(Header, creator) == CREATOR_PID_OFFSET);
const _: () = assert!(std::mem::offset_of!(Header, reserved) == 168);
const _: () = assert!(PAYLOAD_OFFSET == 384 && PAYLOAD_OFFSET % 128 == 0);

impl Header {
    /// Copies the header out of a region (atomic loads, so a racing writer cannot
    /// cause undefined behaviour). `None` if the region is smaller than a header.
    pub fn read_from(region: &Region) -> Option<Header> {
        if region.len() < HEADER_SIZE {
            return None;
        }
        let mut bytes = [0u8; HEADER_SIZE];
        region.read_bytes(0, &mut bytes);
        Header::read_from_bytes(&bytes).ok()
    }

    /// The kind, if the code is known.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_code(self.kind)
    }

    /// The type as recorded.
    pub fn type_description(&self) -> TypeDescription {
        let len = usize::from(self.layout.type_name_len).min(TYPE_NAME_CAPACITY);
        TypeDescription {
            name: String::from_utf8_lossy(&self.layout.type_name[..len]).into_owned(),
            size: u64::from(self.layout.element_size),
            align: u64::from(self.layout.payload_align),
            capacity: self.layout.capacity,
        }
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The default stable name of `T`: `std::any::type_name` with module paths
/// removed (`my_app::feed::Tick` becomes `Tick`, `[my::Px; 4]` becomes `[Px; 4]`),
/// so two binaries that each define `Tick` agree.
pub fn default_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut segment_start = 0;
    for (index, c) in full.char_indices() {
        if !(c.is_alphanumeric() || c == '_' || c == ':') {
            out.push_str(last_path_segment(&full[segment_start..index]));
            out.push(c);
            segment_start = index + c.len_utf8();
        }
    }
    out.push_str(last_path_segment(&full[segment_start..]));
    out
}

fn last_path_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

/// What an opener expects, and what a creator writes.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub kind: Kind,
    pub payload_offset: u64,
    pub payload_size: u64,
    pub payload_align: u32,
    pub element_size: u32,
    pub capacity: u64,
    pub type_name: String,
}

impl Spec {
    /// Segment bytes needed: header, lock, payload. Saturates at `usize::MAX`
    /// (a length no region has, so every length check then fails) rather than
    /// wrap: a store's spec is derived from figures read out of a segment.
    pub fn segment_len(&self) -> usize {
        let len = self.payload_offset.saturating_add(self.payload_size);
        usize::try_from(len).unwrap_or(usize::MAX)
    }

    pub fn type_description(&self) -> TypeDescription {
        TypeDescription {
            name: self.type_name.clone(),
            size: u64::from(self.element_size),
            align: u64::from(self.payload_align),
            capacity: self.capacity,
        }
    }

    fn layout(&self) -> LayoutDescriptor {
        let mut type_name = [0u8; TYPE_NAME_CAPACITY];
        let mut cut = self.type_name.len().min(TYPE_NAME_CAPACITY);
        while !self.type_name.is_char_boundary(cut) {
            cut -= 1;
        }
        type_name[..cut].copy_from_slice(&self.type_name.as_bytes()[..cut]);
        LayoutDescriptor {
            payload_offset: self.payload_offset,
            payload_size: self.payload_size,
            payload_align: self.payload_align,
            element_size: self.element_size,
            capacity: self.capacity,
            type_name_hash: fnv1a(self.type_name.as_bytes()),
            pointer_width: std::mem::size_of::<usize>() as u8,
            type_name_len: cut as u8,
            reserved: [0; 6],
            type_name,
        }
    }
}

fn atomic_u32(region: &Region, offset: usize) -> &AtomicU32 {
    let pointer = region
        .pointer(offset, 4, 4)
        .expect("header word inside the region");
    // SAFETY: in bounds and 4-aligned (checked); the region outlives the
    // reference; every access this crate makes to this word is atomic.
    unsafe { AtomicU32::from_ptr(pointer.cast()) }
}

/// The segment's lock.
#[inline]
pub(crate) fn lock_of(region: &Region) -> &ShmMutex {
    let pointer = region
        .pointer(LOCK_OFFSET, std::mem::size_of::<ShmMutex>(), 128)
        .expect("lock inside the region");
    // SAFETY: in bounds and 128-aligned (checked); ShmMutex is all atomics, so a
    // shared reference is sound while other processes change it; all-zero (or any)
    // bytes are a valid value of it; the region outlives the reference.
    unsafe { &*pointer.cast::<ShmMutex>() }
}

/// Writes a fresh header and payload into a blank region we created exclusively,
/// then publishes `ready` with Release.
pub(crate) fn initialize(
    region: &Region,
    location: &Location,
    spec: &Spec,
    write_payload: impl FnOnce(&Region),
) -> Result<()> {
    if region.len() < spec.segment_len() {
        return Err(Error::TooSmall {
            location: location.clone(),
            needed: spec.segment_len(),
            found: region.len(),
        });
    }
    let pid = sys::current_pid();
    // Claim: the first thing written, so openers know whom to watch.
    if atomic_u32(region, CREATOR_PID_OFFSET)
        .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return Err(Error::Corrupted {
            location: location.clone(),
            what: "a segment we created is not blank".into(),
        });
    }
    let state = atomic_u32(region, STATE_OFFSET);
    state.store(STATE_INITIALIZING, Ordering::Relaxed);

    let header = Header {
        magic: MAGIC,
        format_version: FORMAT_VERSION,
        kind: spec.kind as u32,
        state: STATE_INITIALIZING,
        byte_order: BYTE_ORDER_MARK,
        segment_len: region.len() as u64,
        layout: spec.layout(),
        creator: CreatorRecord {
            pid,
            uid: sys::current_uid(),
            start_time: match sys::task_state(pid) {
                TaskState::Alive(start) => start,
                TaskState::Dead => 0,
            },
            pid_namespace: sys::pid_namespace(),
        },
        reserved: [0; 88],
    };
    let bytes = header.as_bytes();
    // Everything but the state word, which only ever changes atomically.
    region.write_bytes(0, &bytes[..STATE_OFFSET]);
    region.write_bytes(STATE_OFFSET + 4, &bytes[STATE_OFFSET + 4..]);
    lock_of(region).set_namespace(sys::current_domain());
    write_payload(region);
    // Release: an opener that reads `ready` (Acquire) sees all of the above.
    state.store(STATE_READY, Ordering::Release);
    sys::futex_wake(state, u32::MAX);
    Ok(())
}

/// How an opener waits for a segment that is still being initialised.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wait {
    /// The longest wait.
    pub timeout: Duration,
    /// The creator according to the OS (System V `shm_cpid`), for a creator that
    /// died before it could claim the header.
    pub os_creator: Option<u32>,
}

/// Waits until the segment is ready, then copies its header and validates it.
pub(crate) fn open(
    region: &Region,
    location: &Location,
    spec: &Spec,
    wait: Wait,
) -> Result<Header> {
    if region.len() < PAYLOAD_OFFSET {
        return Err(Error::TooSmall {
            location: location.clone(),
            needed: PAYLOAD_OFFSET,
            found: region.len(),
        });
    }
    wait_ready(region, location, wait)?;
    let header = read_header(region, location)?;
    validate(&header, region.len(), location, spec)?;
    Ok(header)
}

/// [`open`] for a segment whose spec depends on its own header (a store's
/// size and directory capacity): waits until it is ready, checks magic,
/// version, platform and `kind` first, then has `derive` compute the spec from
/// the header (an impossible header is its error), then validates against it.
pub(crate) fn open_derived(
    region: &Region,
    location: &Location,
    kind: Kind,
    wait: Wait,
    derive: impl FnOnce(&Header) -> Result<Spec>,
) -> Result<(Header, Spec)> {
    if region.len() < PAYLOAD_OFFSET {
        return Err(Error::TooSmall {
            location: location.clone(),
            needed: PAYLOAD_OFFSET,
            found: region.len(),
        });
    }
    wait_ready(region, location, wait)?;
    let header = read_header(region, location)?;
    check_identity(&header, location, kind)?;
    let spec = derive(&header)?;
    validate(&header, region.len(), location, &spec)?;
    Ok((header, spec))
}

/// The header, copied out; [`Error::TooSmall`] if the region cannot hold one.
pub(crate) fn read_header(region: &Region, location: &Location) -> Result<Header> {
    Header::read_from(region).ok_or_else(|| Error::TooSmall {
        location: location.clone(),
        needed: HEADER_SIZE,
        found: region.len(),
    })
}

/// [`open`] for a region with no OS object behind it (heap, or a store entry):
/// no OS creator to watch; waits at most `timeout` for its creator.
pub(crate) fn open_region(region: &Region, spec: &Spec, timeout: Duration) -> Result<Header> {
    open(
        region,
        &Location::Heap,
        spec,
        Wait {
            timeout,
            os_creator: None,
        },
    )
}

/// Waits (at most `wait.timeout`) until the creator publishes `ready`; the
/// region must hold at least a header and lock ([`PAYLOAD_OFFSET`] bytes).
fn wait_ready(region: &Region, location: &Location, wait: Wait) -> Result<()> {
    let state_word = atomic_u32(region, STATE_OFFSET);
    let started = Instant::now();
    loop {
        let state = state_word.load(Ordering::Acquire);
        match state {
            STATE_READY => return Ok(()),
            STATE_UNINITIALIZED | STATE_INITIALIZING => {
                check_magic_if_written(region, location)?;
                let claimant = atomic_u32(region, CREATOR_PID_OFFSET).load(Ordering::Acquire);
                let creator = if claimant != 0 {
                    Some(claimant)
                } else {
                    wait.os_creator
                };
                if let Some(pid) = creator {
                    // Judge one observation: a creator that published `ready`
                    // and exited between our load of the state and the check
                    // is not a creator that died initialising.
                    if sys::task_state(pid) == TaskState::Dead
                        && state_word.load(Ordering::Acquire) == state
                    {
                        return Err(Error::CreatorDied {
                            location: location.clone(),
                            pid,
                        });
                    }
                }
                let waited = started.elapsed();
                if waited >= wait.timeout {
                    return Err(Error::InitTimeout {
                        location: location.clone(),
                        waited,
                        creator,
                    });
                }
                let nap = (wait.timeout - waited).min(Duration::from_millis(5));
                sys::futex_wait(state_word, state, nap);
            }
            STATE_FAILED => {
                check_magic_if_written(region, location)?;
                return Err(Error::Corrupted {
                    location: location.clone(),
                    what: "the creator marked initialisation as failed".into(),
                });
            }
            other => {
                check_magic_if_written(region, location)?;
                return Err(Error::Corrupted {
                    location: location.clone(),
                    what: format!("init state word is {other}, not 0..=3"),
                });
            }
        }
    }
}

/// A segment whose magic is neither blank nor ours is not ours: say so at once
/// rather than wait for an initialisation that will never come.
fn check_magic_if_written(region: &Region, location: &Location) -> Result<()> {
    let mut magic = [0u8; 8];
    region.read_bytes(0, &mut magic);
    if magic != [0; 8] && magic != MAGIC {
        return Err(Error::BadMagic {
            location: location.clone(),
            expected: MAGIC,
            found: magic,
        });
    }
    Ok(())
}

fn platform(byte_order: u32, pointer_width: u8) -> String {
    let order = match byte_order {
        BYTE_ORDER_MARK => "native byte order".to_owned(),
        0x0403_0201 => "the opposite byte order".to_owned(),
        other => format!("byte order mark {other:#010x}"),
    };
    format!("{order}, {}-bit pointers", u32::from(pointer_width) * 8)
}

/// The first checks of [`validate`], which need no spec: magic, version,
/// platform, kind.
pub(crate) fn check_identity(header: &Header, location: &Location, kind: Kind) -> Result<()> {
    if header.magic != MAGIC {
        return Err(Error::BadMagic {
            location: location.clone(),
            expected: MAGIC,
            found: header.magic,
        });
    }
    if header.format_version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            location: location.clone(),
            supported: FORMAT_VERSION,
            found: header.format_version,
        });
    }
    let pointer_width = std::mem::size_of::<usize>() as u8;
    if header.byte_order != BYTE_ORDER_MARK || header.layout.pointer_width != pointer_width {
        return Err(Error::IncompatiblePlatform {
            location: location.clone(),
            expected: platform(BYTE_ORDER_MARK, pointer_width),
            found: platform(header.byte_order, header.layout.pointer_width),
        });
    }
    if header.kind != kind as u32 {
        return Err(Error::WrongKind {
            location: location.clone(),
            expected: kind.name().into(),
            found: Kind::from_code(header.kind).map_or_else(
                || format!("unknown kind {}", header.kind),
                |k| k.name().into(),
            ),
        });
    }
    Ok(())
}

/// Checks a copied header in the documented order: magic, version, platform,
/// kind, layout (type identity), length.
pub(crate) fn validate(
    header: &Header,
    os_len: usize,
    location: &Location,
    spec: &Spec,
) -> Result<()> {
    check_identity(header, location, spec.kind)?;
    let expected = spec.layout();
    let found = &header.layout;
    if found.type_name_hash != expected.type_name_hash
        || found.element_size != expected.element_size
        || found.payload_align != expected.payload_align
        || found.capacity != expected.capacity
    {
        return Err(Error::TypeMismatch {
            location: location.clone(),
            expected: Box::new(spec.type_description()),
            found: Box::new(header.type_description()),
        });
    }
    if found.payload_offset != expected.payload_offset
        || found.payload_size != expected.payload_size
    {
        return Err(Error::Corrupted {
            location: location.clone(),
            what: format!(
                "payload at {}+{} where the type needs {}+{}",
                found.payload_offset,
                found.payload_size,
                expected.payload_offset,
                expected.payload_size
            ),
        });
    }
    // usize to u64 is lossless on the 64-bit targets this crate builds for
    // (the header records the pointer width, checked above).
    let os_len = u64::try_from(os_len).unwrap_or(u64::MAX);
    if header.segment_len > os_len {
        return Err(Error::LengthMismatch {
            location: location.clone(),
            header_says: header.segment_len,
            os_says: os_len,
        });
    }
    if u64::try_from(spec.segment_len()).unwrap_or(u64::MAX) > header.segment_len {
        return Err(Error::Corrupted {
            location: location.clone(),
            what: format!(
                "header says {} bytes, the payload needs {}",
                header.segment_len,
                spec.segment_len()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_type_names_drop_module_paths() {
        mod feed {
            pub struct Tick;
        }
        assert_eq!(default_type_name::<feed::Tick>(), "Tick");
        assert_eq!(default_type_name::<u64>(), "u64");
        assert_eq!(default_type_name::<[feed::Tick; 4]>(), "[Tick; 4]");
        assert_eq!(default_type_name::<Option<feed::Tick>>(), "Option<Tick>");
    }

    #[test]
    fn all_zero_header_is_uninitialised() {
        let header = Header::read_from_bytes(&[0u8; HEADER_SIZE]).unwrap();
        assert_eq!(header.state, STATE_UNINITIALIZED);
        assert_eq!(header.kind(), None);
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
