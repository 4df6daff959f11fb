//! What a segment holds, read without trusting it: for tools such as `shm ls`.

use crate::lock::LockView;
use crate::segment::format::{Header, Kind, FORMAT_VERSION, LOCK_OFFSET, MAGIC, PAYLOAD_OFFSET};
use crate::segment::region::Region;
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
    let mut lock = [0u8; std::mem::size_of::<crate::lock::ShmMutex>()];
    region.read_bytes(LOCK_OFFSET, &mut lock);
    let lock = LockView::decode(&lock);
    let kind = Kind::from_code(header.kind);
    let ring_len = match kind {
        Some(kind @ (Kind::SpscRing | Kind::SpinningSpscRing | Kind::MpmcRing))
            if region.len() >= PAYLOAD_OFFSET + 136 =>
        {
            // SPSC: tail at 384, head at 512. MPMC: enqueue at 384, dequeue at 512.
            let (first, second) = (
                read_u64(region, PAYLOAD_OFFSET),
                read_u64(region, PAYLOAD_OFFSET + 128),
            );
            ring_fill(kind, first, second, header.layout.capacity)
        }
        _ => None,
    };
    Some(Description {
        kind,
        version_supported: header.format_version == FORMAT_VERSION,
        creator_alive: header.creator.pid != 0
            && matches!(sys::task_state(header.creator.pid), TaskState::Alive(start) if header.creator.start_time == 0 || start == header.creator.start_time),
        lock_holder: lock.and_then(|lock| lock.holder).map(|holder| holder.tid),
        lock_holder_dead: lock.and_then(|lock| lock.holder_dead),
        poisoned: lock.is_some_and(|lock| lock.poisoned),
        ring_len,
        header,
    })
}

/// The fill level of a ring of `kind` whose first index word (SPSC tail, MPMC
/// enqueue position) reads `first` and second (head, dequeue position)
/// `second`; `None` if no ring of `capacity` can be in that state. SPSC
/// positions only grow (`head <= tail`); MPMC positions count modulo 2^64 on
/// purpose (see [`MpmcRing`](crate::MpmcRing)), so there the difference wraps.
fn ring_fill(kind: Kind, first: u64, second: u64, capacity: u64) -> Option<u64> {
    let len = if kind == Kind::MpmcRing {
        Some(first.wrapping_sub(second))
    } else {
        first.checked_sub(second)
    };
    len.filter(|&len| len <= capacity)
}

/// The word at `offset`, which the caller checked lies inside the region.
fn read_u64(region: &Region, offset: usize) -> u64 {
    let mut word = [0u8; 8];
    region.read_bytes(offset, &mut word);
    u64::from_ne_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crafted_ring_fill_levels_near_u64_max() {
        let spsc = Kind::SpscRing;
        assert_eq!(ring_fill(spsc, u64::MAX, u64::MAX - 3, 8), Some(3));
        assert_eq!(ring_fill(spsc, 1, u64::MAX, 8), None, "head passed tail");
        assert_eq!(ring_fill(spsc, u64::MAX, 0, 8), None);
        // MPMC positions wrap: enqueue 1 after dequeue u64::MAX is two values.
        assert_eq!(ring_fill(Kind::MpmcRing, 1, u64::MAX, 8), Some(2));
        assert_eq!(ring_fill(Kind::MpmcRing, 0, 9, 8), None);
    }
}
