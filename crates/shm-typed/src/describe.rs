//! What a segment holds, read without trusting it: for tools such as `shm ls`.

use crate::lock::LockView;
use crate::ring::{mpmc, spsc};
use crate::segment::format::{
    Header, Kind, State, CREATOR_PID_OFFSET, CREATOR_REGISTRY_CTIME_OFFSET, FORMAT_VERSION,
    HEADER_SIZE, LOCK_OFFSET, MAGIC, OLDEST_FORMAT_VERSION, PAYLOAD_OFFSET, STATE_OFFSET,
};
use std::time::Duration;

use crate::schema::Descriptor;
use crate::segment::header::{creator_verdict, lock_of, stored_schema, Verdict};
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
    /// For rings (of every ring kind): the capacity the header records;
    /// `None` for segments that are not rings. Whether a segment is a ring is
    /// decided here, once, for tools that show fill levels.
    pub ring_capacity: Option<u64>,
    /// For rings: items in the ring now (`None` for segments that are not
    /// rings, and for rings whose indices are impossible or lie outside the
    /// region: `ring_capacity` is then `Some`).
    pub ring_len: Option<u64>,
    /// The payload type's stored schema: `None` if the segment has none
    /// (its type does not derive `ShmType`, or format version 2), `Some(Err)`
    /// saying what is wrong with a record or block that does not check out
    /// (the error an opener would get as `Corrupted`).
    pub schema: Option<Result<Descriptor, String>>,
}

/// Reads the header and lock of `region` if it starts with our magic; `None`
/// for anything else (too small, not ours).
///
/// ```
/// use shm_typed::format::Kind;
/// use shm_typed::{describe, Region, Shared};
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
    let ring_capacity = kind.and_then(fill_decoder).map(|_| header.layout.capacity);
    let ring_len = kind
        .and_then(fill_decoder)
        .and_then(|decode| decode(region, header.layout.capacity));
    Some(Description {
        kind,
        version_supported: (OLDEST_FORMAT_VERSION..=FORMAT_VERSION)
            .contains(&header.format_version),
        creator_alive: header.creator.pid != 0
            && matches!(sys::task_state(header.creator.pid), TaskState::Alive(start) if header.creator.start_time == 0 || start == header.creator.start_time),
        lock_holder: lock.and_then(|lock| lock.holder).map(|holder| holder.tid),
        lock_holder_dead: lock.and_then(|lock| lock.holder_dead),
        poisoned: lock.is_some_and(|lock| lock.poisoned),
        ring_capacity,
        ring_len,
        schema: stored_schema(&header, region).transpose(),
        header,
    })
}

/// The value of an object segment ([`Kind::Object`]), as [`object_value`]
/// copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectValue {
    /// The payload's bytes.
    pub bytes: Vec<u8>,
    /// Whether the copy is known whole: made while no lock holder was
    /// writing (the seqlock protocol of read-only openers). `false` when the
    /// lock stayed held for the whole timeout; the bytes are then a copy
    /// that may mix old and new values.
    pub consistent: bool,
}

/// Copies the value of an object segment out of `region` without taking
/// its lock, as a read-only opener does: retried until no holder wrote
/// during the copy, for at most `timeout` (then a copy that may be torn,
/// marked so). `None` if `region` is not a ready object segment of ours, or
/// its header places the payload outside the region.
///
/// ```
/// use std::time::Duration;
/// use shm_typed::{object_value, Region, Shared};
///
/// let shared = Shared::<u64>::options().create_in(Region::heap(4096), 7)?;
/// let value = object_value(shared.region(), Duration::from_millis(10)).expect("an object");
/// assert_eq!(value.bytes, 7u64.to_ne_bytes());
/// assert!(value.consistent);
/// # Ok::<(), shm_typed::Error>(())
/// ```
pub fn object_value(region: &Region, timeout: Duration) -> Option<ObjectValue> {
    let description = describe(region)?;
    let header = &description.header;
    if description.kind != Some(Kind::Object) || header.state != State::Ready as u32 {
        return None;
    }
    let offset = usize::try_from(header.layout.payload_offset).ok()?;
    let len = usize::try_from(header.layout.payload_size).ok()?;
    if offset.checked_add(len)? > region.len() || offset < PAYLOAD_OFFSET {
        return None;
    }
    let copy = || {
        let mut bytes = vec![0u8; len];
        region.read_bytes(offset, &mut bytes);
        bytes
    };
    Some(match lock_of(region).read_consistent(timeout, copy) {
        Ok(bytes) => ObjectValue {
            bytes,
            consistent: true,
        },
        Err(_) => ObjectValue {
            bytes: copy(),
            consistent: false,
        },
    })
}

/// A segment that is not ready and may be one of ours that a creator began:
/// what [`describe_unready`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unready {
    /// The state word: [`State::Uninitialized`] or [`State::Initializing`].
    pub state: State,
    /// The creator: the claim in the header, or before any claim the OS's
    /// creator that the caller passed in.
    pub creator: Option<u32>,
    /// Whether that creator verifiably died, so that the segment will never
    /// become ready (a pid that cannot be judged here is not dead).
    pub creator_dead: bool,
    /// Whether every byte is zero: nothing was written yet. A segment of all
    /// zeros holds no data, whoever made it; one that is not all zero has our
    /// magic or only the words a creator of ours writes first.
    pub blank: bool,
}

/// Looks at a segment that [`describe`] does not take for a ready one of
/// ours: `Some` if it is blank, or carries our magic or only the state word
/// and creator record our creators write first, and is not ready. The OS's
/// creator (System V `shm_cpid`, as [`shm_sys::sysv::SegmentInfo::cpid`]
/// gives it) judges a segment whose header holds no claim; pass `None` where
/// there is no such thing (POSIX).
///
/// ```
/// use shm_typed::{describe_unready, Region};
///
/// let blank = describe_unready(&Region::heap(4096), None).expect("blank");
/// assert!(blank.blank);
/// assert!(!blank.creator_dead); // nobody to judge
/// # Ok::<(), shm_typed::Error>(())
/// ```
pub fn describe_unready(region: &Region, os_creator: Option<u32>) -> Option<Unready> {
    if region.len() < PAYLOAD_OFFSET {
        return None;
    }
    let header = Header::read_from(region)?;
    let state = State::from_code(header.state)
        .filter(|state| matches!(state, State::Uninitialized | State::Initializing))?;
    let rest_zero = rest_is_zero(region);
    let blank = rest_zero && header_bytes_zero_but(region, &[]);
    if header.magic != MAGIC {
        let first_words = [
            STATE_OFFSET..STATE_OFFSET + 4,
            CREATOR_PID_OFFSET..CREATOR_REGISTRY_CTIME_OFFSET + 8,
        ];
        if header.magic != [0; 8] || !rest_zero || !header_bytes_zero_but(region, &first_words) {
            return None;
        }
    }
    let (creator, verdict) = creator_verdict(region, os_creator);
    Some(Unready {
        state,
        creator,
        creator_dead: verdict == Verdict::Dead { verified: true },
        blank,
    })
}

/// What the creator's kernel token (see docs/FORMAT.md, "Kernel tokens")
/// says of it, in any pid namespace: `Some(true)` dead, `Some(false)` alive,
/// `None` if it recorded none or this process cannot read its registry (then
/// judge it by pid, in its own pid namespace only).
pub fn creator_token_verdict(creator: &crate::format::CreatorRecord) -> Option<bool> {
    let token = crate::lock::liveness::recorded_token(creator.token, 0)?;
    let registry = crate::lock::token::Registry {
        name: creator.registry,
        ctime: creator.registry_ctime,
    };
    crate::lock::token::is_dead(registry, token)
}

/// Whether the header's bytes outside `except` are all zero.
fn header_bytes_zero_but(region: &Region, except: &[std::ops::Range<usize>]) -> bool {
    let mut bytes = [0u8; HEADER_SIZE];
    region.read_bytes(0, &mut bytes);
    bytes
        .iter()
        .enumerate()
        .all(|(offset, &byte)| byte == 0 || except.iter().any(|range| range.contains(&offset)))
}

/// Whether everything after the header is zero (read in pieces).
fn rest_is_zero(region: &Region) -> bool {
    let mut piece = [0u8; 4096];
    let mut offset = HEADER_SIZE;
    while offset < region.len() {
        let len = piece.len().min(region.len() - offset);
        region.read_bytes(offset, &mut piece[..len]);
        if piece[..len].iter().any(|&byte| byte != 0) {
            return false;
        }
        offset += len;
    }
    true
}

/// Reads the fill level of one ring kind's segment (each ring module decodes
/// its own indices): the region and the capacity its header records; `None`
/// if the indices are impossible or lie outside the region.
type FillDecoder = fn(&Region, u64) -> Option<u64>;

/// The decoder of the fill level for segments of `kind`, `None` for kinds
/// that are not rings. This is the one place that says which kinds are rings
/// and how each one's indices are read; the match is exhaustive on purpose,
/// so a new kind cannot be added without deciding here.
fn fill_decoder(kind: Kind) -> Option<FillDecoder> {
    match kind {
        Kind::SpscRing => Some(spsc::fill),
        // `SpinningSpscRing` is `SpscRing<T, false>`: the same layout, its
        // own header kind.
        Kind::SpinningSpscRing => Some(spsc::fill),
        Kind::MpmcRing => Some(mpmc::fill),
        Kind::Object | Kind::Store => None,
    }
}

/// Text from a segment made safe inside a C comment: printable ASCII only,
/// and no `*/` or `/*` (which `-Wcomment` warns of).
fn c_comment_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .replace("*/", "*?")
        .replace("/*", "/?")
}

/// A C11 header for the segment `description` describes: the header as
/// `shm_header` (with `shm_layout`, `shm_creator`, `shm_schema_record`), the
/// lock as `shm_lock`, and the payload type as `shm_value` (an object's
/// value, a ring's element; for a store, its directory record's bytes): from the
/// stored schema when there is one, else an opaque struct of the recorded
/// size and alignment. For an object, `shm_object` is the whole segment up
/// to the end of the value. `#define`s give the offsets and the header's
/// values, and `_Static_assert`s check the sizes when the header is compiled.
/// What the words mean and how to use them is in docs/FORMAT.md.
///
/// ```
/// use shm_typed::{c_header, describe, Region, Shared};
///
/// let shared = Shared::<u64>::options().create_in(Region::heap(4096), 7)?;
/// let header = c_header(&describe(shared.region()).expect("ours"));
/// assert!(header.contains("typedef struct shm_object {"));
/// assert!(header.contains("    uint64_t value; /* offset 384 */"));
/// assert!(header.contains("#define SHM_PAYLOAD_OFFSET 384"));
/// # Ok::<(), shm_typed::Error>(())
/// ```
pub fn c_header(description: &Description) -> String {
    use crate::format::{Header, LockRecord};
    use crate::schema::{render_c_all, Field, Primitive, ShmType};
    use std::fmt::Write as _;

    let header = &description.header;
    let layout = &header.layout;
    let type_description = header.type_description();
    let (value, value_note) = match &description.schema {
        Some(Ok(schema)) => (schema.clone(), "from the segment's schema".to_owned()),
        other => {
            let why = match other {
                Some(Err(error)) => format!("its schema block is unusable: {error}"),
                _ => "it has no schema: only its name, size and alignment are known".to_owned(),
            };
            let size = u64::from(layout.element_size);
            let opaque =
                Descriptor::array(Descriptor::primitive(Primitive::U8), size).and_then(|bytes| {
                    Descriptor::structure(
                        "shm_opaque",
                        size,
                        u64::from(layout.payload_align),
                        vec![Field::new("bytes", 0, bytes)],
                        false,
                    )
                });
            match opaque {
                Ok(opaque) => (opaque, why),
                Err(_) => (
                    Descriptor::primitive(Primitive::U8),
                    format!("{why}; its recorded size and alignment do not form a type"),
                ),
            }
        }
    };
    let header_type = Header::descriptor();
    let lock_type = LockRecord::descriptor();
    // An object: the segment from its start to the end of its value.
    let object = (description.kind == Some(Kind::Object))
        .then(|| {
            let align = value.align().max(lock_type.align());
            let end = layout.payload_offset.checked_add(value.size())?;
            Descriptor::structure(
                "shm_object",
                end.checked_next_multiple_of(align)?,
                align,
                vec![
                    Field::new("header", 0, header_type.clone()),
                    Field::new("lock", LOCK_OFFSET as u64, lock_type.clone()),
                    Field::new("value", layout.payload_offset, value.clone()),
                ],
                false,
            )
            .ok()
        })
        .flatten();
    // The roots keep their names (`shm_object` too: a payload type of that
    // name becomes `shm_object_2`, still aliased `shm_value`).
    let mut roots = vec![(&header_type, None), (&lock_type, None)];
    if let Some(object) = &object {
        roots.push((object, None));
    }
    roots.push((&value, Some("shm_value")));
    let kind = description.kind.map_or_else(
        || format!("unknown kind {}", header.kind),
        |kind| kind.name().to_owned(),
    );
    let mut out = format!(
        "/* A shm-typed segment: format version {}, {kind}, type {} ({} bytes, align {}).\n \
         * shm_value is its {}, {}.\n \
         * Generated by shm inspect --c-header; docs/FORMAT.md says how each word is used. */\n",
        header.format_version,
        c_comment_text(&type_description.name),
        type_description.size,
        type_description.align,
        match description.kind {
            Some(Kind::Object) => "value",
            Some(Kind::Store) => "directory record",
            _ => "element type",
        },
        c_comment_text(&value_note),
    );
    out.push_str(&render_c_all(&roots));
    out.push('\n');
    let defines = [
        ("SHM_MAGIC", "\"SHMTYPED\"".to_owned()),
        ("SHM_FORMAT_VERSION", header.format_version.to_string()),
        ("SHM_BYTE_ORDER_MARK", "0x01020304u".to_owned()),
        ("SHM_KIND", header.kind.to_string()),
        ("SHM_STATE_READY", (State::Ready as u32).to_string()),
        ("SHM_LOCK_OFFSET", LOCK_OFFSET.to_string()),
        ("SHM_PAYLOAD_OFFSET", layout.payload_offset.to_string()),
        ("SHM_PAYLOAD_SIZE", layout.payload_size.to_string()),
        ("SHM_CAPACITY", layout.capacity.to_string()),
        ("SHM_SEGMENT_LEN", header.segment_len.to_string()),
        (
            "SHM_SCHEMA_FINGERPRINT",
            format!("{:#018x}ULL", header.schema.fingerprint),
        ),
        ("SHM_SCHEMA_OFFSET", header.schema.offset.to_string()),
        ("SHM_SCHEMA_LEN", header.schema.len.to_string()),
    ];
    for (name, value) in defines {
        let _ = writeln!(out, "#define {name} {value}");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "_Static_assert(sizeof(shm_header) == {HEADER_SIZE}, \"shm_header\");"
    );
    let _ = writeln!(
        out,
        "_Static_assert(sizeof(shm_lock) == {}, \"shm_lock\");",
        lock_type.size()
    );
    let _ = writeln!(
        out,
        "_Static_assert(sizeof(shm_value) == {}, \"shm_value\");",
        value.size()
    );
    if let Some(object) = &object {
        let _ = writeln!(
            out,
            "_Static_assert(sizeof(shm_object) == {}, \"shm_object\");",
            object.size()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Not under Miri: there the registry that finds a type's schema is
    // empty (it relies on link sections), so the segment has none.
    #[cfg(not(miri))]
    #[test]
    fn a_payload_type_named_like_a_c_header_root_is_renamed() {
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, crate::ShmType)]
        #[shm(crate = "crate", name = "shm_object")]
        #[repr(C)]
        struct Impostor {
            x: u64,
        }
        let shared = crate::Shared::<Impostor>::options()
            .create_in(Region::heap(4096), Impostor { x: 1 })
            .unwrap();
        let header = c_header(&describe(shared.region()).unwrap());
        assert!(
            header.contains("} shm_object; /* size 512, align 128 */"),
            "{header}"
        );
        assert!(header.contains("} shm_object_2; /* size 8"), "{header}");
        assert!(
            header.contains("typedef shm_object_2 shm_value;"),
            "{header}"
        );
    }

    #[test]
    fn c_headers_keep_hostile_type_names_inside_their_comment() {
        let shared = crate::Shared::<u64>::options()
            .type_name("evil */ #error boom\n/*")
            .create_in(Region::heap(4096), 7)
            .unwrap();
        let header = c_header(&describe(shared.region()).unwrap());
        let first = header.lines().next().unwrap();
        assert!(first.contains("type evil *? #error boom?/? ("), "{first}");
        assert_eq!(
            header.matches("*/").count(),
            header.matches("/*").count(),
            "{header}"
        );
    }
    use crate::segment::format::CREATOR_NAMESPACE_OFFSET;

    #[test]
    fn crafted_ring_fill_levels_near_u64_max() {
        assert_eq!(spsc::fill_of(u64::MAX, u64::MAX - 3, 8), Some(3));
        assert_eq!(spsc::fill_of(1, u64::MAX, 8), None, "head passed tail");
        assert_eq!(spsc::fill_of(u64::MAX, 0, 8), None);
        // MPMC positions wrap: enqueue 1 after dequeue u64::MAX is two values.
        assert_eq!(mpmc::fill_of(1, u64::MAX, 8), Some(2));
        assert_eq!(mpmc::fill_of(0, 9, 8), None);
    }

    #[test]
    fn every_ring_kind_has_a_fill_decoder_and_nothing_else_does() {
        for code in 0..16 {
            let Some(kind) = Kind::from_code(code) else {
                continue;
            };
            let ring = matches!(
                kind,
                Kind::SpscRing | Kind::SpinningSpscRing | Kind::MpmcRing
            );
            assert_eq!(fill_decoder(kind).is_some(), ring, "{kind:?}");
        }
    }

    #[test]
    fn unready_segments_are_told_from_other_bytes() {
        let blank = Region::heap(8192);
        let found = describe_unready(&blank, None).expect("blank");
        assert!(found.blank && !found.creator_dead && found.creator.is_none());
        assert_eq!(found.state, State::Uninitialized);

        // The words a creator writes first: still ours, no longer blank.
        let early = Region::heap(8192);
        early.write_bytes(CREATOR_NAMESPACE_OFFSET, &7u64.to_ne_bytes());
        early.write_bytes(STATE_OFFSET, &State::Initializing.code().to_ne_bytes());
        let found = describe_unready(&early, None).expect("a creator's first words");
        assert!(!found.blank);
        assert_eq!(found.state, State::Initializing);

        // Anything else without our magic is not ours.
        let other = Region::heap(8192);
        other.write_bytes(8000, &[1]);
        assert_eq!(describe_unready(&other, None), None);
        let other = Region::heap(8192);
        other.write_bytes(40, &[1]);
        assert_eq!(describe_unready(&other, None), None);

        // Ready segments are describe's.
        let ready = crate::Shared::<u64>::options()
            .create_in(Region::heap(4096), 7)
            .expect("a heap value");
        assert_eq!(describe_unready(ready.region(), None), None);
    }

    #[test]
    fn a_spinning_ring_is_described_with_its_fill() {
        let ring = crate::SpinningSpscRing::<u32>::create_spinning_in(Region::heap(8192), 16)
            .expect("a heap ring");
        ring.producer()
            .unwrap()
            .push_slice(&[1, 2, 3, 4, 5])
            .unwrap();
        let description = describe(ring.region()).expect("ours");
        assert_eq!(description.kind, Some(Kind::SpinningSpscRing));
        assert_eq!(description.ring_capacity, Some(16));
        assert_eq!(description.ring_len, Some(5));
    }

    #[test]
    fn a_ring_cut_short_has_a_capacity_but_no_fill() {
        let region = Region::heap(4096);
        let ring = crate::SpscRing::<u64>::create_in(region, 16).expect("a heap ring");
        let whole = std::sync::Arc::new(ring.into_region());
        // Only the header and the tail word: the head word lies outside.
        let part = Region::part(&whole, 0, PAYLOAD_OFFSET + 64).expect("a part");
        let description = describe(&part).expect("ours");
        assert_eq!(description.ring_capacity, Some(16));
        assert_eq!(description.ring_len, None);
        assert_eq!(describe(&whole).expect("ours").ring_len, Some(0));
    }
}
