//! The one place that decides "that party is dead": the lock's takeover, the
//! SPSC side claims and `shm ls` all ask it, and all judge one consistent
//! observation of one acquisition.
//!
//! # Acquisitions and their records
//!
//! Whatever can be held and taken over (the lock, a ring side) is an *owner
//! word* of 64 bits: the holder's id (thread or process id) in the low half and
//! a *generation* in the high half, which every acquisition changes. Beside it
//! sits a *record* word that the new holder writes right after winning the owner
//! word: its start time (clock ticks since boot) in the high 40 bits and the low
//! 24 bits of the generation it won as a tag.
//!
//! A judge loads the owner word, then the record. The record describes the
//! acquisition that the owner word shows only if its tag equals that
//! generation's; otherwise (the holder has not written it yet, or a later
//! holder has) the start time is unknown, and the holder counts as dead only if
//! no task with its id exists at all. A takeover is a compare-and-swap from the
//! whole observed owner word, generation included, so it succeeds only on the
//! acquisition that was judged: had the holder released and anyone (that
//! holder included) acquired again, the generation differs and the CAS fails.
//!
//! What remains is wrap-around: the CAS is fooled only if 2^32 acquisitions
//! happen between the judge's load and its CAS and the last of them is the same
//! id's; the tag is fooled only if 2^24 happen between two adjacent loads. Both
//! need the judge to stall for minutes at the highest acquisition rate while
//! the ids line up; we accept that and say so.
//!
//! Ids mean something only inside one pid namespace, and start times only
//! inside one time namespace. A segment records its creator's pair of both (its
//! *domain*); a judge of another domain never takes over, and a holder of
//! another domain marks its acquisition [`FOREIGN`], which nobody takes over.
//!
//! Only definite answers count as dead: `ESRCH`, no `/proc` entry, a zombie,
//! or a start time that differs from the one recorded for this very
//! acquisition. A `/proc` that cannot be read counts as alive.

use crate::sys::{self, StartTime, TaskState};

/// The id part (low half) of an owner word.
pub(crate) const ID_MASK: u64 = 0xffff_ffff;
/// Bits of the record that carry the generation tag.
const TAG_BITS: u32 = 24;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Start times are kept to 39 bits (174 years of ticks at `USER_HZ` = 100), so
/// that a start-time record never has bit 63, which marks a token record.
const START_MASK: u64 = (1 << (63 - TAG_BITS)) - 1;

/// The generation of an owner word.
#[inline(always)]
pub(crate) const fn generation(owner: u64) -> u32 {
    (owner >> 32) as u32
}

/// The owner word of the acquisition after `owner`, by `id` (the generation
/// wraps on purpose: it only ever needs to differ from recent ones).
#[inline(always)]
pub(crate) const fn next(owner: u64, id: u32) -> u64 {
    ((generation(owner).wrapping_add(1) as u64) << 32) | id as u64
}

/// The record a holder writes after winning generation `generation`.
#[inline(always)]
pub(crate) const fn record(start: StartTime, generation: u32) -> u64 {
    ((start & START_MASK) << TAG_BITS) | (generation as u64 & TAG_MASK)
}

/// The start time in `record` if it was written for `generation`.
#[inline(always)]
pub(crate) const fn recorded_start(record: u64, generation: u32) -> Option<StartTime> {
    if record & TAG_MASK == generation as u64 & TAG_MASK && record >> TAG_BITS != 0 {
        Some(record >> TAG_BITS)
    } else {
        None
    }
}

/// The largest process or thread id Linux hands out (`PID_MAX_LIMIT`, 2^22).
const PID_MAX_LIMIT: u32 = 1 << 22;

/// Whether `id` is larger than any id Linux hands out, in any pid namespace:
/// written by no live holder, so its holder counts as dead (a peer's
/// scribble, not a claim).
#[inline(always)]
pub(crate) const fn impossible_id(id: u32) -> bool {
    id > PID_MAX_LIMIT
}

/// Set in a token record (see [`token_record`]).
const TOKEN_PRESENT: u64 = 1 << 63;

/// A token record without its tag: bit 63 set, the kernel token (see
/// [`token`](super::token)) in bits 24-54; 0 for no token.
#[inline(always)]
pub(crate) const fn token_base(token: Option<super::token::Token>) -> u64 {
    match token {
        Some(token) => TOKEN_PRESENT | (token as u64 & 0x7fff_ffff) << TAG_BITS,
        None => 0,
    }
}

/// The token record a holder writes after winning generation `generation`:
/// its kernel token in bits 24-54, bit 63 set, and the generation's low 24
/// bits as the tag. 0 for a holder without a token in the segment's registry
/// (so that no older holder's token is ever taken for its own).
#[inline(always)]
pub(crate) const fn token_record(token: Option<super::token::Token>, generation: u32) -> u64 {
    tagged(token_base(token), generation)
}

/// `base` (see [`token_base`]) tagged with `generation`; 0 stays 0.
#[inline(always)]
pub(crate) const fn tagged(base: u64, generation: u32) -> u64 {
    if base == 0 {
        0
    } else {
        base | (generation as u64 & TAG_MASK)
    }
}

/// The token in `record` if it was written for `generation`.
#[inline(always)]
pub(crate) const fn recorded_token(record: u64, generation: u32) -> Option<super::token::Token> {
    if record & TOKEN_PRESENT != 0 && record & TAG_MASK == generation as u64 & TAG_MASK {
        Some(((record >> TAG_BITS) & 0x7fff_ffff) as u32)
    } else {
        None
    }
}

/// The token a holder writes for a segment whose registry is `segment`:
/// ours, if ours is that registry.
#[inline(always)]
pub(crate) fn own_token(
    segment: u64,
    ours: (u64, super::token::Token),
) -> Option<super::token::Token> {
    (ours.0 != 0 && ours.0 == segment).then_some(ours.1)
}

/// Whether task `id`, which held an acquisition whose record says it started
/// at `recorded` (`None`: unknown), is dead now: no such task, a zombie, or a
/// task with that id that started at another time (the id was reused).
/// A task whose start time `/proc` would not tell (0) is alive.
pub(crate) fn is_dead(id: u32, recorded: Option<StartTime>) -> bool {
    id == 0 || judge(sys::task_state(id), recorded)
}

/// [`is_dead`] for a process id (the SPSC side claims): a process whose main
/// thread exited while other threads run is alive.
pub(crate) fn is_process_dead(pid: u32, recorded: Option<StartTime>) -> bool {
    pid == 0 || judge(sys::process_state(pid), recorded)
}

/// A process-wide claim (a ring side): its owner word, and the start-time
/// and token records its holder wrote after winning it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    pub owner: u64,
    pub start: u64,
    pub token: u64,
}

/// The id a process writes into a claim word of a segment of domain
/// `segment` (0: unknown): its pid, marked [`FOREIGN`] if it lives in another
/// domain.
pub(crate) fn claim_id(pid: u32, segment: u64) -> u32 {
    pid | if foreign(sys::current_domain(), segment) {
        FOREIGN as u32
    } else {
        0
    }
}

/// Whether the process holding `claim` is dead, as the lock judges its
/// holders: by its kernel token in `registry` if it wrote one we can read
/// (any domain), else by its pid and start time, which only a judge of the
/// segment's domain `segment` may read, and only for a holder of that domain.
pub(crate) fn is_claim_dead(claim: Claim, segment: u64, registry: super::token::Registry) -> bool {
    let pid = (claim.owner & ID_MASK) as u32;
    if pid == 0 || impossible_id(pid & !(FOREIGN as u32)) {
        return true;
    }
    let generation = generation(claim.owner);
    // By pid wherever pids can be read (a token can drop while its process
    // lives: `unshare(CLONE_NEWIPC)`); the token only across domains.
    if claim.owner & FOREIGN == 0 && !foreign(sys::current_domain(), segment) {
        return is_process_dead(pid, recorded_start(claim.start, generation));
    }
    recorded_token(claim.token, generation)
        .is_some_and(|token| super::token::is_dead(registry, token) == Some(true))
}

fn judge(state: TaskState, recorded: Option<StartTime>) -> bool {
    match state {
        TaskState::Dead => true,
        TaskState::Alive(0) => false,
        TaskState::Alive(start) => recorded.is_some_and(|recorded| start & START_MASK != recorded),
    }
}

/// Set in an owner or claim word by a holder whose liveness domain (pid and
/// time namespaces, see `sys::current_domain`) is not the segment's: nobody
/// can judge it, so nobody ever takes it over. Ids need 22 bits at most
/// (`PID_MAX_LIMIT`), so bit 30 is free.
pub(crate) const FOREIGN: u64 = 1 << 30;

/// Whether a process of domain `ours` acquiring in a segment of domain
/// `theirs` (0: unknown) is foreign to it.
#[inline(always)]
pub(crate) fn foreign(ours: u64, theirs: u64) -> bool {
    theirs != 0 && ours != theirs
}

/// A start time as records keep it.
#[inline(always)]
pub(crate) fn own_start(start: StartTime) -> StartTime {
    start & START_MASK
}

/// The calling process's start time as records keep it (0: unknown). Reads
/// `/proc`: for claims, not for every lock.
pub(crate) fn own_process_start() -> StartTime {
    match sys::task_state(sys::current_pid()) {
        TaskState::Alive(start) => own_start(start),
        TaskState::Dead => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_match_only_their_own_generation() {
        let start = 123_456_789;
        let written = record(start, 7);
        assert_eq!(recorded_start(written, 7), Some(start));
        assert_eq!(recorded_start(written, 8), None);
        // The tag is the generation's low 24 bits.
        assert_eq!(recorded_start(written, 7 + (1 << 24)), Some(start));
        // A zero record (nothing written) is unknown for any generation.
        assert_eq!(recorded_start(0, 0), None);
    }

    #[test]
    fn token_records_match_only_their_own_generation() {
        let token = (1023 << 15) | 32767;
        let written = token_record(Some(token), 9);
        assert_eq!(recorded_token(written, 9), Some(token));
        assert_eq!(recorded_token(written, 10), None);
        assert_eq!(token_record(None, 9), 0);
        assert_eq!(
            recorded_token(0, 0),
            None,
            "no token: none for any generation"
        );
        // A start-time record is never read as a token.
        assert_eq!(recorded_token(record(123, 9), 9), None);
    }

    #[test]
    fn every_acquisition_changes_the_generation() {
        let first = next(0, 42);
        assert_eq!((first & ID_MASK, generation(first)), (42, 1));
        let again = next(first & !ID_MASK, 42);
        assert_ne!(first, again);
        assert_eq!(generation(next(u64::MAX, 5)), 0, "wraps on purpose");
    }

    #[cfg(not(miri))]
    #[test]
    fn the_caller_is_alive_and_reuse_is_seen() {
        let tid = sys::current_tid();
        let start = own_start(sys::current_start_time());
        assert!(!is_dead(tid, Some(start)));
        assert!(!is_dead(tid, None));
        assert!(
            is_dead(tid, Some(start + 1)),
            "another start time: reused id"
        );
        assert!(is_dead(0, None));
    }
}
