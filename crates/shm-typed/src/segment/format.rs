//! The on-disk format, version 3: every constant, offset and structure a
//! reader in any language needs, owned here and nowhere else. The lock's words
//! are laid out and decoded by [`ShmMutex`], the rings' by their own modules;
//! `docs/FORMAT.md` describes the bytes in full.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::TypeDescription;
use crate::lock::ShmMutex;
use crate::schema::ShmType;
use crate::segment::region::Region;

/// The first 8 bytes of every segment we write.
pub const MAGIC: [u8; 8] = *b"SHMTYPED";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format version this build opens: version 2 is version 3
/// without a schema block (its bytes 192..256 are zero, which reads as "no
/// schema").
pub const OLDEST_FORMAT_VERSION: u32 = 2;
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

/// The init state word (header offset 16), an atomic in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum State {
    /// All-zero bytes: nobody has claimed the segment yet.
    Uninitialized = 0,
    /// A creator is writing the header.
    Initializing = 1,
    /// Header and payload are written (stored with Release).
    Ready = 2,
    /// The creator gave up; the segment is unusable.
    Failed = 3,
}

impl State {
    /// The state with this code, if it is one.
    pub fn from_code(code: u32) -> Option<State> {
        Some(match code {
            0 => State::Uninitialized,
            1 => State::Initializing,
            2 => State::Ready,
            3 => State::Failed,
            _ => return None,
        })
    }

    /// The word's value.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// A lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            State::Uninitialized => "uninitialised",
            State::Initializing => "initialising",
            State::Ready => "ready",
            State::Failed => "failed",
        }
    }
}

/// Offset of the state word.
pub const STATE_OFFSET: usize = 16;
/// Offset of the creator's pid: the claim, a CAS from 0 that comes right
/// after the rest of the creator record and before anything else.
pub const CREATOR_PID_OFFSET: usize = 144;

/// Offset of the creator's start time (`u64`), written before the claim.
pub const CREATOR_START_OFFSET: usize = CREATOR_PID_OFFSET + 8;

/// Offset of the creator's pid-namespace inode (`u64`), written before the
/// claim.
pub const CREATOR_NAMESPACE_OFFSET: usize = CREATOR_PID_OFFSET + 16;

/// Offset of the creator's kernel-token record (`u64`), written before the
/// claim.
pub const CREATOR_TOKEN_OFFSET: usize = CREATOR_PID_OFFSET + 24;

/// Offset of the creator's token registry (`u64`), written before the claim.
pub const CREATOR_REGISTRY_OFFSET: usize = CREATOR_PID_OFFSET + 32;

/// Offset of the schema record ([`SchemaRecord`]).
pub const SCHEMA_RECORD_OFFSET: usize = 192;

/// Offset of that registry's creation time (`u64`), written before the claim.
pub const CREATOR_REGISTRY_CTIME_OFFSET: usize = CREATOR_PID_OFFSET + 40;

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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, ShmType,
)]
#[shm(crate = "crate", name = "shm_layout")]
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

/// Who made the segment (bytes 144..192).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, ShmType,
)]
#[shm(crate = "crate", name = "shm_creator")]
pub struct CreatorRecord {
    /// Process id (claimed atomically before anything else is written).
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Process start time, clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// Inode of `/proc/<pid>/ns/pid`.
    pub pid_namespace: u64,
    /// The creator's kernel token as a token record of generation 0 (bit 63
    /// set, token in bits 24-54; 0: none), written before the claim.
    pub token: u64,
    /// The registry that token is in (IPC namespace inode << 32 | semaphore
    /// set id; 0: none), written before the claim.
    pub registry: u64,
    /// That registry's `sem_ctime` (seconds since the epoch) when the creator
    /// used it; tokens are read only from a set with this time (0: none).
    pub registry_ctime: u64,
}

/// The segment header, format version 3: the first 256 bytes of every segment.
/// All-zero bytes are the valid "uninitialised" header.
///
/// It derives [`ShmType`] so that tools can render it (`shm inspect
/// --c-header` writes it as the C struct `shm_header`).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, ShmType,
)]
#[shm(crate = "crate", name = "shm_header")]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// A [`Kind`] code.
    pub kind: u32,
    /// Init [`State`] code; an atomic in the segment, a snapshot here.
    pub state: u32,
    /// [`BYTE_ORDER_MARK`].
    pub byte_order: u32,
    /// Segment length the creator asked for.
    pub segment_len: u64,
    /// What the payload is.
    pub layout: LayoutDescriptor,
    /// Who made the segment.
    pub creator: CreatorRecord,
    /// Where the type's schema is (bytes 192..216; all zero: none).
    pub schema: SchemaRecord,
    /// Zero; room for later versions.
    pub reserved: [u8; 40],
}

/// The words of the segment's lock ([`ShmMutex`], bytes 256..384), as plain
/// integers: its layout for tools (`shm inspect --c-header` writes it as the
/// C struct `shm_lock`). The lock itself is made of atomics and only ever
/// accessed through [`ShmMutex`]; docs/FORMAT.md ("Lock") says what each word
/// means and how it is used.
#[repr(C, align(128))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ShmType)]
#[shm(crate = "crate", name = "shm_lock")]
pub struct LockRecord {
    /// Generation (bits 32-63), flags and holder tid.
    pub owner: u64,
    /// The futex word waiters sleep on.
    pub wakes: u32,
    /// `INCONSISTENT` (bit 0) and `POISONED` (bit 1).
    pub flags: u32,
    /// The holder's start time and generation.
    pub record: u64,
    /// The seqlock count (odd while held for writing).
    pub sequence: u64,
    /// The liveness domain of the lock's users.
    pub namespace: u64,
    /// The holder's kernel token record.
    pub token: u64,
    /// The registry tokens are read from.
    pub registry: u64,
    /// That registry's `sem_ctime`.
    pub registry_ctime: u64,
    /// Zero.
    pub reserved: [u64; 8],
}

/// Where a segment's schema block is (see docs/FORMAT.md, "Schema block"):
/// the structural description of its payload type, written by a creator
/// whose type derives `ShmType`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, ShmType,
)]
#[shm(crate = "crate", name = "shm_schema_record")]
pub struct SchemaRecord {
    /// FNV-1a 64 of the block: the type's structural fingerprint (0: no
    /// schema).
    pub fingerprint: u64,
    /// Offset of the block from the segment's start: right after the
    /// payload, rounded up to 8.
    pub offset: u64,
    /// Length of the block in bytes (at most 64 KiB).
    pub len: u32,
    /// Zero.
    pub reserved: u32,
}

const _: () = assert!(std::mem::size_of::<LayoutDescriptor>() == 112);
const _: () = assert!(std::mem::size_of::<CreatorRecord>() == 48);
const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(std::mem::offset_of!(Header, state) == STATE_OFFSET);
const _: () = assert!(std::mem::offset_of!(Header, segment_len) == 24);
const _: () = assert!(std::mem::offset_of!(Header, layout) == 32);
const _: () = assert!(std::mem::offset_of!(Header, creator) == CREATOR_PID_OFFSET);
const _: () = assert!(
    std::mem::offset_of!(Header, creator) + std::mem::offset_of!(CreatorRecord, start_time)
        == CREATOR_START_OFFSET
);
const _: () = assert!(
    std::mem::offset_of!(Header, creator) + std::mem::offset_of!(CreatorRecord, pid_namespace)
        == CREATOR_NAMESPACE_OFFSET
);
const _: () = assert!(std::mem::offset_of!(Header, schema) == SCHEMA_RECORD_OFFSET);
const _: () = assert!(std::mem::size_of::<SchemaRecord>() == 24);
const _: () = assert!(std::mem::offset_of!(Header, reserved) == 216);
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<LockRecord>() == size_of::<ShmMutex>());
    assert!(align_of::<LockRecord>() == align_of::<ShmMutex>());
    assert!(offset_of!(LockRecord, owner) == crate::lock::OFFSETS[0]);
    assert!(offset_of!(LockRecord, wakes) == crate::lock::OFFSETS[1]);
    assert!(offset_of!(LockRecord, flags) == crate::lock::OFFSETS[2]);
    assert!(offset_of!(LockRecord, record) == crate::lock::OFFSETS[3]);
    assert!(offset_of!(LockRecord, sequence) == crate::lock::OFFSETS[4]);
    assert!(offset_of!(LockRecord, namespace) == crate::lock::OFFSETS[5]);
    assert!(offset_of!(LockRecord, token) == crate::lock::OFFSETS[6]);
    assert!(offset_of!(LockRecord, registry) == crate::lock::OFFSETS[7]);
    assert!(offset_of!(LockRecord, registry_ctime) == crate::lock::OFFSETS[8]);
    assert!(offset_of!(LockRecord, reserved) == crate::lock::OFFSETS[9]);
};
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

    /// The init state at the time of the copy, if the code is known.
    pub fn state(&self) -> Option<State> {
        State::from_code(self.state)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_header_is_uninitialised() {
        let header = Header::read_from_bytes(&[0u8; HEADER_SIZE]).unwrap();
        assert_eq!(header.state(), Some(State::Uninitialized));
        assert_eq!(header.kind(), None);
    }

    #[test]
    fn state_codes_round_trip() {
        for state in [
            State::Uninitialized,
            State::Initializing,
            State::Ready,
            State::Failed,
        ] {
            assert_eq!(State::from_code(state.code()), Some(state));
        }
        assert_eq!(State::from_code(4), None);
    }
}
