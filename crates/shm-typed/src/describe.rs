//! What a segment holds, read without trusting it: for tools such as `shm ls`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::header::{Header, Kind, FORMAT_VERSION, MAGIC, PAYLOAD_OFFSET};
use crate::lock::holder_is_dead;
use crate::region::Region;
use crate::sys::{self, TaskState};

/// A decoded view of one of our segments. Every field was copied out of the
/// segment with atomic loads and is only as true as the peers that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Description {
    /// The header as copied out.
    pub header: Header,
    /// The kind, if the code is known.
    pub kind: Option<Kind>,
    /// Whether this build reads the header's format version.
    pub version_supported: bool,
    /// Whether the process that created the segment is still alive.
    pub creator_alive: bool,
    /// The thread holding the segment's lock, if any.
    pub lock_holder: Option<u32>,
    /// Whether that holder is dead (the next locker will take the lock over).
    pub lock_holder_dead: Option<bool>,
    /// Whether the lock is poisoned.
    pub poisoned: bool,
    /// For rings: items in the ring now (`None` if the indices are impossible).
    pub ring_len: Option<u64>,
}

/// Reads the header and lock of `region` if it starts with our magic; `None`
/// for anything else (too small, not ours).
///
/// ```
/// use shm_typed::{describe, Kind, Region, Shared};
///
/// let shared = Shared::<u64>::options().create_in(Region::heap(4096), 7)?;
/// let description = describe(shared.region()).expect("ours");
/// assert_eq!(description.kind, Some(Kind::Object));
/// assert_eq!(description.header.type_description().name, "u64");
/// assert!(describe(&Region::heap(4096)).is_none()); // blank: not ours (yet)
/// # Ok::<(), shm_typed::Error>(())
/// ```
pub fn describe(region: &Region) -> Option<Description> {
    if region.len() < PAYLOAD_OFFSET {
        return None;
    }
    let header = Header::read_from(region)?;
    if header.magic != MAGIC {
        return None;
    }
    let mut lock = [0u8; 24];
    region.read_bytes(crate::header::LOCK_OFFSET, &mut lock);
    let word = u32::from_ne_bytes([lock[0], lock[1], lock[2], lock[3]]);
    let flags = u32::from_ne_bytes([lock[4], lock[5], lock[6], lock[7]]);
    let mut start = [0u8; 8];
    start.copy_from_slice(&lock[8..16]);
    let holder = word & !(1 << 31);
    let lock_holder = (word != 0).then_some(holder);
    let ring_len = match Kind::from_code(header.kind) {
        Some(Kind::SpscRing | Kind::SpinningSpscRing | Kind::MpmcRing)
            if region.len() >= PAYLOAD_OFFSET + 136 =>
        {
            let (first, second) = (
                read_u64(region, PAYLOAD_OFFSET),
                read_u64(region, PAYLOAD_OFFSET + 128),
            );
            // SPSC: tail at 384, head at 512. MPMC: enqueue at 384, dequeue at 512.
            first
                .checked_sub(second)
                .filter(|&len| len <= header.layout.capacity)
        }
        _ => None,
    };
    Some(Description {
        kind: Kind::from_code(header.kind),
        version_supported: header.format_version == FORMAT_VERSION,
        creator_alive: header.creator.pid != 0
            && matches!(sys::task_state(header.creator.pid), TaskState::Alive(start) if header.creator.start_time == 0 || start == header.creator.start_time),
        lock_holder,
        lock_holder_dead: lock_holder.map(|tid| holder_is_dead(tid, u64::from_ne_bytes(start))),
        poisoned: flags & 2 != 0,
        ring_len,
        header,
    })
}

fn read_u64(region: &Region, offset: usize) -> u64 {
    let pointer = region.pointer(offset, 8, 8).expect("inside the region");
    // SAFETY: in bounds and 8-aligned (checked); shared words are only ever
    // accessed atomically.
    unsafe { AtomicU64::from_ptr(pointer.cast()) }.load(Ordering::Acquire)
}
