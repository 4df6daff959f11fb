//! The init protocol over the header: a creator claims, writes and publishes
//! it; an opener waits for `ready`, copies it out and validates it against
//! what it expects (a [`Spec`]). The bytes themselves are [`format`](crate::format)'s.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use zerocopy::{FromZeros, IntoBytes};

use crate::error::{Error, Result, TypeDescription};
use crate::fault;
use crate::location::Location;
use crate::lock::{liveness, ShmMutex};
use crate::schema::{self, Compat, Descriptor};
use crate::segment::format::{
    CreatorRecord, Header, Kind, LayoutDescriptor, SchemaRecord, State, BYTE_ORDER_MARK,
    CREATOR_NAMESPACE_OFFSET, CREATOR_PID_OFFSET, CREATOR_REGISTRY_CTIME_OFFSET,
    CREATOR_REGISTRY_OFFSET, CREATOR_START_OFFSET, CREATOR_TOKEN_OFFSET, FORMAT_VERSION,
    HEADER_SIZE, LOCK_OFFSET, MAGIC, OLDEST_FORMAT_VERSION, PAYLOAD_OFFSET, STATE_OFFSET,
    TYPE_NAME_CAPACITY,
};
use crate::segment::region::Region;
use crate::sys::{self, TaskState};

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
    /// The payload type's layout, if it derives `ShmType`
    /// ([`schema::layout_of`]): recorded by a creator, compared by an opener.
    pub schema: Option<&'static schema::Layout>,
    /// Whether an opener accepts a segment whose type extends ours
    /// ([`Compat::Prefix`]): only a read-only object does.
    pub accepts_prefix: bool,
}

impl Spec {
    /// Segment bytes needed: header, lock, payload, and the schema block if
    /// any. Saturates at `usize::MAX` (a length no region has, so every
    /// length check then fails) rather than wrap: a store's spec is derived
    /// from figures read out of a segment.
    pub fn segment_len(&self) -> usize {
        let len = match self.schema {
            Some(layout) => self
                .schema_offset()
                .saturating_add(layout.encoded_len() as u64),
            None => self.payload_offset.saturating_add(self.payload_size),
        };
        usize::try_from(len).unwrap_or(usize::MAX)
    }

    /// Where a schema block goes: after the payload, at a multiple of 8.
    fn schema_offset(&self) -> u64 {
        self.payload_offset
            .saturating_add(self.payload_size)
            .checked_next_multiple_of(8)
            .unwrap_or(u64::MAX)
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

fn atomic_u64(region: &Region, offset: usize) -> &AtomicU64 {
    let pointer = region
        .pointer(offset, 8, 8)
        .expect("header word inside the region");
    // SAFETY: in bounds and 8-aligned (checked); the region outlives the
    // reference; every access this crate makes to this word is atomic (the
    // header copy reads it with atomic loads too).
    unsafe { AtomicU64::from_ptr(pointer.cast()) }
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
    let claim = atomic_u32(region, CREATOR_PID_OFFSET);
    let not_blank = || Error::Corrupted {
        location: location.clone(),
        what: "a segment we created is not blank".into(),
    };
    if claim.load(Ordering::Acquire) != 0 {
        return Err(not_blank());
    }
    let start_time = match sys::task_state(pid) {
        TaskState::Alive(start) => start,
        TaskState::Dead => 0,
    };
    let pid_namespace = sys::pid_namespace();
    let (_, token) = crate::lock::token::mine();
    let registry = crate::lock::token::my_registry();
    let token = liveness::token_record((registry.name != 0).then_some(token), 0);
    // The rest of the creator record goes first, so that whoever sees the
    // claim also sees in which pid namespace its pid means something (see
    // `creator_verdict`). Nobody else writes a segment we created.
    atomic_u64(region, CREATOR_START_OFFSET).store(start_time, Ordering::Relaxed);
    atomic_u64(region, CREATOR_NAMESPACE_OFFSET).store(pid_namespace, Ordering::Relaxed);
    atomic_u64(region, CREATOR_TOKEN_OFFSET).store(token, Ordering::Relaxed);
    atomic_u64(region, CREATOR_REGISTRY_OFFSET).store(registry.name, Ordering::Relaxed);
    atomic_u64(region, CREATOR_REGISTRY_CTIME_OFFSET).store(registry.ctime, Ordering::Relaxed);
    fault::point("init:after-record");
    // Claim (Release: the record above comes with it), so openers know whom
    // to watch.
    if claim
        .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return Err(not_blank());
    }
    fault::point("init:after-claim");
    let state = atomic_u32(region, STATE_OFFSET);
    state.store(State::Initializing.code(), Ordering::Relaxed);
    fault::point("init:after-state");

    let (schema_record, block) = match spec.schema {
        Some(layout) => {
            let descriptor =
                Descriptor::from_layout(layout).map_err(|error| Error::Unsupported {
                    location: location.clone(),
                    what: format!("the type's ShmType layout is inconsistent: {error}"),
                })?;
            let block = schema::encode(&descriptor);
            let record = SchemaRecord {
                fingerprint: fnv1a(&block),
                offset: spec.schema_offset(),
                len: block.len() as u32,
                reserved: 0,
            };
            (record, block)
        }
        None => (SchemaRecord::new_zeroed(), Vec::new()),
    };
    let header = Header {
        magic: MAGIC,
        format_version: FORMAT_VERSION,
        kind: spec.kind as u32,
        state: State::Initializing.code(),
        byte_order: BYTE_ORDER_MARK,
        segment_len: region.len() as u64,
        layout: spec.layout(),
        creator: CreatorRecord {
            pid,
            uid: sys::current_uid(),
            start_time,
            pid_namespace,
            token,
            registry: registry.name,
            registry_ctime: registry.ctime,
        },
        schema: schema_record,
        reserved: [0; 40],
    };
    let bytes = header.as_bytes();
    // Everything but the state word, which only ever changes atomically.
    region.write_bytes(0, &bytes[..STATE_OFFSET]);
    region.write_bytes(STATE_OFFSET + 4, &bytes[STATE_OFFSET + 4..]);
    fault::point("init:after-header");
    lock_of(region).set_namespace(sys::current_domain(), registry);
    fault::point("init:after-lock");
    if !block.is_empty() {
        // In bounds: the region holds spec.segment_len() bytes (checked
        // above), which end with the block.
        region.write_bytes(schema_record.offset as usize, &block);
    }
    write_payload(region);
    fault::point("init:after-payload");
    // Release: an opener that reads `ready` (Acquire) sees all of the above.
    state.store(State::Ready.code(), Ordering::Release);
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
    validate(&header, region, location, spec)?;
    Ok(header)
}

/// [`open`] for a segment whose spec depends on its own header (a store's
/// size and directory capacity): waits until it is ready, checks magic,
/// version, platform and `kind` first, then has `derive` compute the spec from
/// the header (an impossible header is its error), then validates against it.
pub(crate) fn open_derived<S>(
    region: &Region,
    location: &Location,
    kind: Kind,
    wait: Wait,
    derive: impl FnOnce(&Header) -> Result<(Spec, S)>,
) -> Result<S> {
    if region.len() < PAYLOAD_OFFSET {
        return Err(Error::TooSmall {
            location: location.clone(),
            needed: PAYLOAD_OFFSET,
            found: region.len(),
        });
    }
    wait_ready(region, location, wait)?;
    let header = read_header(region, location)?;
    validate_derived(&header, region, location, kind, derive)
}

/// The checks of [`open_derived`] on the header as it is now, without
/// waiting; a header that is not ours, or not ready, is
/// [`Error::WrongKind`] ("something else": what a tool asking "is this a
/// store?" should hear).
pub(crate) fn check_derived<S>(
    region: &Region,
    location: &Location,
    kind: Kind,
    derive: impl FnOnce(&Header) -> Result<(Spec, S)>,
) -> Result<S> {
    let header = Header::read_from(region)
        .filter(|header| header.magic == MAGIC)
        .ok_or_else(|| Error::WrongKind {
            location: location.clone(),
            expected: kind.name().into(),
            found: "something else".into(),
        })?;
    validate_derived(&header, region, location, kind, derive)
}

fn validate_derived<S>(
    header: &Header,
    region: &Region,
    location: &Location,
    kind: Kind,
    derive: impl FnOnce(&Header) -> Result<(Spec, S)>,
) -> Result<S> {
    check_identity(header, location, kind)?;
    let (spec, derived) = derive(header)?;
    validate(header, region, location, &spec)?;
    Ok(derived)
}

/// The header, copied out; [`Error::TooSmall`] if the region cannot hold one.
pub(crate) fn read_header(region: &Region, location: &Location) -> Result<Header> {
    Header::read_from(region).ok_or_else(|| Error::TooSmall {
        location: location.clone(),
        needed: HEADER_SIZE,
        found: region.len(),
    })
}

/// Waits (at most `wait.timeout`) until the creator publishes `ready`; the
/// region must hold at least a header and lock ([`PAYLOAD_OFFSET`] bytes).
fn wait_ready(region: &Region, location: &Location, wait: Wait) -> Result<()> {
    let state_word = atomic_u32(region, STATE_OFFSET);
    let started = Instant::now();
    loop {
        let state = state_word.load(Ordering::Acquire);
        match State::from_code(state) {
            Some(State::Ready) => return Ok(()),
            Some(State::Uninitialized | State::Initializing) => {
                check_magic_if_written(region, location)?;
                let (creator, verdict) = creator_verdict(region, wait.os_creator);
                // Judge one observation: a creator that published `ready` and
                // exited between our load of the state and the verdict is not
                // a creator that died initialising.
                if let (Some(pid), Verdict::Dead { .. }) = (creator, verdict) {
                    if state_word.load(Ordering::Acquire) == state {
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
            Some(State::Failed) => {
                check_magic_if_written(region, location)?;
                return Err(Error::Corrupted {
                    location: location.clone(),
                    what: "the creator marked initialisation as failed".into(),
                });
            }
            None => {
                check_magic_if_written(region, location)?;
                return Err(Error::Corrupted {
                    location: location.clone(),
                    what: format!("init state word is {state}, not 0..=3"),
                });
            }
        }
    }
}

/// What an opener can say of a segment's creator while the segment is not
/// ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Alive, or an answer we cannot trust (its pid may have been reused).
    Alive,
    /// Dead: it will never publish `ready`. `verified` when its pid was
    /// judged in the pid namespace it was written in (a record that names
    /// ours, or the kernel's `shm_cpid`); a claim without a record (written by
    /// hand, or by a creator that died between claim and record in an older
    /// build) is judged by pid alone, which is enough to report the death but
    /// not to act on it.
    Dead { verified: bool },
    /// No creator to judge, or one whose pid means nothing here (another pid
    /// namespace, or one we could not read).
    Unknown,
}

/// Whom to watch while a segment is not ready, and whether they are dead: the
/// claimant in the header, or before any claim the OS's creator (System V
/// `shm_cpid`, already translated into our pid namespace by the kernel, 0 when
/// the creator is not visible from it).
///
/// A claimant is judged only when its record names our pid namespace: a
/// creator writes its record before its claim, so the record seen with the
/// claim is its own. A pid that is alive is alive even if it was reused
/// (waiting longer is the safe error); `Dead` is final, which is what makes
/// taking a dead creator's segment over safe.
pub(crate) fn creator_verdict(region: &Region, os_creator: Option<u32>) -> (Option<u32>, Verdict) {
    let claimant = atomic_u32(region, CREATOR_PID_OFFSET).load(Ordering::Acquire);
    if claimant != 0 {
        let namespace = atomic_u64(region, CREATOR_NAMESPACE_OFFSET).load(Ordering::Relaxed);
        let ours = sys::pid_namespace();
        return match namespace {
            0 => (Some(claimant), judge(claimant, false)),
            _ if namespace == ours => (Some(claimant), judge(claimant, true)),
            // Another pid namespace: only a kernel token can tell (see
            // `lock::token`).
            _ => {
                let token = atomic_u64(region, CREATOR_TOKEN_OFFSET).load(Ordering::Relaxed);
                let registry = crate::lock::token::Registry {
                    name: atomic_u64(region, CREATOR_REGISTRY_OFFSET).load(Ordering::Relaxed),
                    ctime: atomic_u64(region, CREATOR_REGISTRY_CTIME_OFFSET)
                        .load(Ordering::Relaxed),
                };
                let verdict = match liveness::recorded_token(token, 0)
                    .and_then(|token| crate::lock::token::is_dead(registry, token))
                {
                    Some(true) => Verdict::Dead { verified: true },
                    Some(false) => Verdict::Alive,
                    None => Verdict::Unknown,
                };
                (Some(claimant), verdict)
            }
        };
    }
    // The kernel reports `shm_cpid` in our pid namespace (0 if the creator is
    // not visible from it) since Linux 4.17; before, it gave the creator's own
    // number, which may name another task here.
    match os_creator {
        Some(pid) if pid != 0 => (Some(pid), judge(pid, sys::kernel_at_least(4, 17))),
        _ => (None, Verdict::Unknown),
    }
}

fn judge(pid: u32, verified: bool) -> Verdict {
    match sys::process_state(pid) {
        TaskState::Dead => Verdict::Dead { verified },
        TaskState::Alive(_) => Verdict::Alive,
    }
}

/// Whether the segment is not ready and its creator verifiably died (see
/// [`Verdict`]): what an opener must know before it removes the segment to
/// make a fresh one.
pub(crate) fn died_initialising(region: &Region, os_creator: Option<u32>) -> bool {
    if region.len() < PAYLOAD_OFFSET {
        return false;
    }
    let state = atomic_u32(region, STATE_OFFSET).load(Ordering::Acquire);
    let not_ready = matches!(
        State::from_code(state),
        Some(State::Uninitialized | State::Initializing)
    );
    let verdict = creator_verdict(region, os_creator).1;
    not_ready
        && verdict == Verdict::Dead { verified: true }
        && atomic_u32(region, STATE_OFFSET).load(Ordering::Acquire) == state
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
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&header.format_version) {
        return Err(Error::UnsupportedVersion {
            location: location.clone(),
            oldest: OLDEST_FORMAT_VERSION,
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
/// kind, schema (if both sides have one), layout (type identity), length.
pub(crate) fn validate(
    header: &Header,
    region: &Region,
    location: &Location,
    spec: &Spec,
) -> Result<()> {
    check_identity(header, location, spec.kind)?;
    let os_len = region.len();
    let expected = spec.layout();
    let found = &header.layout;
    let type_mismatch = || Error::TypeMismatch {
        location: location.clone(),
        expected: Box::new(spec.type_description()),
        found: Box::new(header.type_description()),
    };
    // Another name, alignment or capacity says it all; the same name gets
    // the field-level answer of the schemas, where both sides have one.
    if found.type_name_hash != expected.type_name_hash
        || found.payload_align != expected.payload_align
        || found.capacity != expected.capacity
    {
        return Err(type_mismatch());
    }
    let prefix = check_schema(header, region, location, spec)? == Some(Compat::Prefix);
    let sizes_fit = if prefix {
        // The segment's type extends ours: it is larger, the payload too.
        found.element_size >= expected.element_size && found.payload_size >= expected.payload_size
    } else {
        found.element_size == expected.element_size
    };
    if !sizes_fit {
        return Err(type_mismatch());
    }
    if found.payload_offset != expected.payload_offset
        || (!prefix && found.payload_size != expected.payload_size)
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
    if !prefix && u64::try_from(spec.segment_len()).unwrap_or(u64::MAX) > header.segment_len {
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

/// Reads the segment's schema block, if its header records one, checking
/// that it lies after the payload and inside the segment, that its bytes hash
/// to the recorded fingerprint, and that it decodes; then compares it with
/// ours if we have one. `None`: nothing to compare (either side has no
/// schema: the name, size and alignment decide, as before schemas).
/// The schema block the header's record points at, decoded: `Ok(None)` if
/// the record is all zero (no schema), `Err` saying what is wrong if the
/// record points outside the segment, the block does not hash to the
/// recorded fingerprint, or it does not decode.
pub(crate) fn stored_schema(
    header: &Header,
    region: &Region,
) -> std::result::Result<Option<Descriptor>, String> {
    let record = header.schema;
    if record.fingerprint == 0 && record.offset == 0 && record.len == 0 {
        return Ok(None);
    }
    let block = schema_block(header, region)?;
    schema::decode(&block)
        .map(Some)
        .map_err(|error| format!("schema block: {error}"))
}

/// The schema block's bytes, checked to lie after the payload inside the
/// segment and to hash to the recorded fingerprint.
fn schema_block(header: &Header, region: &Region) -> std::result::Result<Vec<u8>, String> {
    let record = header.schema;
    let payload_end = header
        .layout
        .payload_offset
        .checked_add(header.layout.payload_size);
    let end = record.offset.checked_add(u64::from(record.len));
    let inside = matches!((payload_end, end), (Some(payload_end), Some(end))
        if record.offset >= payload_end
            && end <= header.segment_len
            && usize::try_from(end).is_ok_and(|end| end <= region.len()));
    if !inside || record.len as usize > schema::MAX_SCHEMA_LEN {
        return Err(format!(
            "schema block at {}+{} outside the segment's {} bytes after the payload",
            record.offset, record.len, header.segment_len
        ));
    }
    let mut block = vec![0u8; record.len as usize];
    region.read_bytes(record.offset as usize, &mut block);
    if fnv1a(&block) != record.fingerprint {
        return Err(format!(
            "schema block does not hash to its fingerprint {:#018x}",
            record.fingerprint
        ));
    }
    Ok(block)
}

fn check_schema(
    header: &Header,
    region: &Region,
    location: &Location,
    spec: &Spec,
) -> Result<Option<Compat>> {
    let corrupted = |what| Error::Corrupted {
        location: location.clone(),
        what,
    };
    // The common case, without decoding: the block is where the record says
    // and hashes to the recorded fingerprint, which is the local type's. The
    // fingerprint is the hash of the canonical encoding, so equal ones mean
    // the same descriptor (up to FNV collisions, which a peer able to write
    // the segment could forge; it could as well write any value, and every
    // payload type is `Pod`, so a forged match cannot cause undefined
    // behaviour).
    if let Some(layout) = spec.schema {
        if header.schema.fingerprint != 0 && header.schema.fingerprint == layout.fingerprint() {
            schema_block(header, region).map_err(corrupted)?;
            return Ok(Some(Compat::Identical));
        }
    }
    let Some(stored) = stored_schema(header, region).map_err(corrupted)? else {
        return Ok(None);
    };
    let Some(layout) = spec.schema else {
        return Ok(None);
    };
    let local = Descriptor::from_layout(layout).map_err(|error| Error::Unsupported {
        location: location.clone(),
        what: format!("the type's ShmType layout is inconsistent: {error}"),
    })?;
    match schema::compare(&local, &stored) {
        Ok(Compat::Prefix) if !spec.accepts_prefix => Err(Error::SchemaExtended {
            location: location.clone(),
            name: stored.type_name(),
            extra: extra_fields(&local, &stored),
        }),
        Ok(compat) => Ok(Some(compat)),
        Err(mismatch) => Err(Error::SchemaMismatch {
            location: location.clone(),
            name: local.type_name(),
            mismatch: Box::new(mismatch),
        }),
    }
}

/// The names of the fields `stored` has after all of `local`'s.
fn extra_fields(local: &Descriptor, stored: &Descriptor) -> String {
    match (local.kind(), stored.kind()) {
        (
            schema::TypeKind::Struct { fields: ours, .. },
            schema::TypeKind::Struct { fields: theirs, .. },
        ) => theirs
            .iter()
            .skip(ours.len())
            .map(|field| field.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
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
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
