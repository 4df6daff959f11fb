//! What each fuzz target does with its input, shared by the libFuzzer targets
//! (fuzz/fuzz_targets/*.rs) and the stable replay test
//! (tests/fuzz_regressions.rs), so neither duplicates it. Plain Rust: no
//! libFuzzer here.
//!
//! Every function copies the input into a fresh heap region
//! (`Region::heap`, never System V or /dev/shm), runs the public API an opener
//! or peer would run over it, and returns how many operations succeeded. Every
//! outcome must be `Ok` or `Err`; a panic (or a sanitizer report) is a bug.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shm_typed::format::{Kind, State, STATE_OFFSET};
use shm_typed::{
    describe as describe_region, describe_unready, store_entries, Consumer, MpmcRing, Producer,
    Region, Shared, SpinningSpscRing, SpscRing, Store,
};

/// Header offset of the ring capacity (see docs/FORMAT.md).
const CAPACITY_OFFSET: usize = 56;
/// Longest script the `rings` target reads from the front of its input.
const MAX_SCRIPT: usize = 255;

/// A heap region holding exactly `bytes` (`None` for an empty input: a
/// region has at least one byte).
pub fn region_from(bytes: &[u8]) -> Option<Region> {
    if bytes.is_empty() {
        return None;
    }
    let region = Region::heap(bytes.len());
    // SAFETY: the region is a fresh, writable heap buffer of exactly
    // `bytes.len()` bytes that nothing else refers to yet; the input slice is
    // a separate allocation, so the ranges do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), region.as_ptr(), bytes.len()) };
    Some(region)
}

/// The bytes a region holds now (for seeds and tests).
pub fn region_bytes(region: &Region) -> Vec<u8> {
    (0..region.len())
        .map(|offset| {
            // SAFETY: `offset < len`, inside the region; the atomic load matches
            // how the library itself reads shared bytes.
            unsafe { std::sync::atomic::AtomicU8::from_ptr(region.as_ptr().add(offset)) }
                .load(Ordering::Relaxed)
        })
        .collect()
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let word = bytes.get(offset..offset + 8)?;
    Some(u64::from_ne_bytes(word.try_into().ok()?))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset + 4)?;
    Some(u32::from_ne_bytes(word.try_into().ok()?))
}

/// Whether an open of these bytes would wait for a creator: the public ring
/// `open_in`s wait up to 1 s and take no timeout, which would stall the
/// fuzzer. The same wait is driven (with a zero timeout) through
/// `Shared::options().init_timeout(..)` and the store's options.
fn would_wait(bytes: &[u8]) -> bool {
    matches!(
        u32_at(bytes, STATE_OFFSET).and_then(State::from_code),
        Some(State::Uninitialized | State::Initializing)
    )
}

/// The capacities to try for a ring: the one the header claims, and 8.
fn capacities(bytes: &[u8]) -> Vec<u64> {
    let mut out = vec![8];
    if let Some(claimed) = u64_at(bytes, CAPACITY_OFFSET) {
        if claimed != 8 {
            out.push(claimed);
        }
    }
    out
}

/// Opens `Shared<u64>`, `Shared<[u8; 64]>` and each ring kind (of `u64`) from
/// the bytes; on a successful object open also `try_lock`s it (the lock's
/// decoder: holder record, dead-holder takeover, poison). Returns the number
/// of successful opens.
pub fn header(bytes: &[u8]) -> usize {
    let mut opened = 0;
    let Some(_) = region_from(bytes) else {
        return 0;
    };
    let zero = Duration::ZERO;
    if let Ok(shared) = Shared::<u64>::options()
        .init_timeout(zero)
        .lock_timeout(Some(zero))
        .open_in(region_from(bytes).unwrap())
    {
        opened += 1;
        let _ = shared.is_poisoned();
        let _ = shared.lock_holder();
        if let Ok(guard) = shared.try_lock() {
            let _ = guard.owner_died();
            let _value: u64 = *guard;
        }
        let _ = shared.load();
    }
    if let Ok(shared) = Shared::<[u8; 64]>::options()
        .init_timeout(zero)
        .lock_timeout(Some(zero))
        .open_in(region_from(bytes).unwrap())
    {
        opened += 1;
        if let Ok(guard) = shared.try_lock() {
            let _value: [u8; 64] = *guard;
        }
    }
    if would_wait(bytes) {
        return opened;
    }
    for capacity in capacities(bytes) {
        if let Ok(ring) = SpscRing::<u64>::open_in(region_from(bytes).unwrap(), capacity) {
            opened += 1;
            let _ = ring.len();
        }
        if let Ok(ring) =
            SpinningSpscRing::<u64>::open_spinning_in(region_from(bytes).unwrap(), capacity)
        {
            opened += 1;
            let _ = ring.len();
        }
        if let Ok(ring) = MpmcRing::<u64>::open_in(region_from(bytes).unwrap(), capacity) {
            opened += 1;
            let _ = ring.len();
        }
    }
    opened
}

/// Opens a store from the bytes, lists its entries (through the store and
/// through `store_entries`), and opens each entry by name as each kind it
/// could be, with element types of its recorded size. Returns the number of
/// successful opens and listings.
pub fn store(bytes: &[u8]) -> usize {
    let Some(region) = region_from(bytes) else {
        return 0;
    };
    let mut ok = 0;
    if let Ok(entries) = store_entries(region) {
        ok += 1 + usize::from(!entries.is_empty());
    }
    let zero = Duration::ZERO;
    let Ok(store) = Store::options()
        .init_timeout(zero)
        .lock_timeout(Some(zero))
        .entry_lock_timeout(Some(zero))
        .open_in(region_from(bytes).unwrap())
    else {
        return ok;
    };
    ok += 1;
    let Ok(entries) = store.entries() else {
        return ok;
    };
    ok += 1;
    for entry in entries {
        let name = entry.name.as_str();
        let capacity = entry.capacity;
        // Every kind, whatever the record claims: a mismatch must be an error.
        let opens = [
            store.get_object::<u64>(name).is_ok(),
            store.get_object::<[u8; 64]>(name).is_ok(),
            store.get_object::<u32>(name).is_ok(),
            store.get_spsc::<u64>(name, capacity).is_ok(),
            store.get_spsc::<u32>(name, capacity).is_ok(),
            store.get_mpmc::<u64>(name, capacity).is_ok(),
            store.get_mpmc::<u32>(name, capacity).is_ok(),
        ];
        ok += opens.iter().filter(|&&o| o).count();
        match entry.kind {
            Kind::Object => {
                if let Ok(object) = store.get_object::<u64>(name) {
                    if let Ok(guard) = object.try_lock() {
                        let _value: u64 = *guard;
                    }
                }
            }
            Kind::SpscRing => {
                if let Ok(ring) = store.get_spsc::<u64>(name, capacity) {
                    let _ = ring.len();
                    if let Ok(mut consumer) = ring.consumer() {
                        let _ = consumer.pop();
                    }
                }
            }
            Kind::MpmcRing => {
                if let Ok(ring) = store.get_mpmc::<u64>(name, capacity) {
                    let _ = ring.len();
                    let _ = ring.pop();
                }
            }
            _ => {}
        }
    }
    ok
}

/// The hostile-peer script at the front of a `rings` input: its first byte
/// `n`, then `n` script bytes; the region is the rest.
pub fn split_script(bytes: &[u8]) -> (&[u8], &[u8]) {
    let Some((&n, rest)) = bytes.split_first() else {
        return (&[], &[]);
    };
    let n = usize::from(n).min(rest.len()).min(MAX_SCRIPT);
    rest.split_at(n)
}

/// Prefixes `region` with a script (for seeds and tests).
pub fn with_script(script: &[u8], region: &[u8]) -> Vec<u8> {
    assert!(script.len() <= MAX_SCRIPT);
    let mut out = vec![script.len() as u8];
    out.extend_from_slice(script);
    out.extend_from_slice(region);
    out
}

/// One step of the script.
enum Op {
    Len,
    Pop,
    Push(u64),
    PopBatch(usize),
    PushBatch(usize),
    /// A peer's store of a u64 at this offset (8-aligned, inside the region).
    Poke(usize, u64),
    Blocking,
    /// Drop and claim the handles again.
    Reclaim,
}

fn ops(script: &[u8], region_len: usize) -> Vec<Op> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < script.len() {
        let byte = script[at];
        at += 1;
        let arg = |at: &mut usize, n: usize| -> u64 {
            let mut word = [0u8; 8];
            let take = n.min(script.len() - *at);
            word[..take].copy_from_slice(&script[*at..*at + take]);
            *at += take;
            u64::from_le_bytes(word)
        };
        out.push(match byte % 8 {
            0 => Op::Len,
            1 => Op::Pop,
            2 => Op::Push(arg(&mut at, 2)),
            3 => Op::PopBatch(usize::from(byte >> 3) + 1),
            4 => Op::PushBatch(usize::from(byte >> 3) + 1),
            5 => {
                let offset = arg(&mut at, 2) as usize * 8;
                let value = arg(&mut at, 8);
                if region_len < 8 {
                    continue;
                }
                Op::Poke(offset % (region_len / 8 * 8), value)
            }
            6 => Op::Blocking,
            _ => Op::Reclaim,
        });
    }
    out
}

/// A peer's write: a relaxed atomic u64 store into the region.
fn poke(region: &Region, offset: usize, value: u64) {
    if offset % 8 != 0 || !matches!(offset.checked_add(8), Some(end) if end <= region.len()) {
        return;
    }
    // SAFETY: `offset + 8 <= len` and the region start is page-aligned, so the
    // word is in bounds and 8-aligned; the library reads shared bytes only with
    // atomics and holds no reference into them across our calls, so an atomic
    // store here is what a peer process's store would be.
    unsafe { AtomicU64::from_ptr(region.as_ptr().add(offset).cast()) }
        .store(value, Ordering::Relaxed);
}

/// The sides of an SPSC ring, as a peer holds them.
type Sides<'r, const WAKE: bool> = (
    Option<Producer<'r, u64, WAKE>>,
    Option<Consumer<'r, u64, WAKE>>,
);

fn run_spsc<'r, const WAKE: bool>(
    ring: &'r SpscRing<u64, WAKE>,
    ops: &[Op],
    mut blocking: impl FnMut(&mut Sides<'r, WAKE>) -> usize,
) -> usize {
    let mut ok = 0;
    let mut producer = ring.producer().ok();
    let mut consumer = ring.consumer().ok();
    ok += usize::from(producer.is_some()) + usize::from(consumer.is_some());
    let mut buffer = [0u64; 32];
    for op in ops {
        match *op {
            Op::Len => {
                ok += usize::from(ring.len().is_ok());
                ok += usize::from(ring.positions().is_ok());
                ok += usize::from(ring.is_empty().is_ok());
                if let Some(consumer) = consumer.as_mut() {
                    ok += usize::from(consumer.len().is_ok());
                }
                if let Some(producer) = producer.as_mut() {
                    ok += usize::from(producer.free_slots().is_ok());
                }
            }
            Op::Pop => {
                if let Some(consumer) = consumer.as_mut() {
                    ok += usize::from(consumer.pop().is_ok());
                }
            }
            Op::Push(value) => {
                if let Some(producer) = producer.as_mut() {
                    ok += usize::from(producer.push(value).is_ok());
                }
            }
            Op::PopBatch(n) => {
                if let Some(consumer) = consumer.as_mut() {
                    ok += usize::from(consumer.pop_into(&mut buffer[..n]).is_ok());
                    if let Ok(chunk) = consumer.read_chunk(n) {
                        ok += 1;
                        let sum: u64 = chunk.iter().fold(0, u64::wrapping_add);
                        let _ = chunk.get(0).map(|v| v.wrapping_add(sum));
                        let half = chunk.len() / 2;
                        chunk.commit(half);
                    }
                }
            }
            Op::PushBatch(n) => {
                if let Some(producer) = producer.as_mut() {
                    let values: Vec<u64> = (0..n as u64).collect();
                    ok += usize::from(producer.push_slice(&values).is_ok());
                    ok += usize::from(producer.push_slice_streaming(&values).is_ok());
                    if let Ok(mut chunk) = producer.write_chunk(n) {
                        ok += 1;
                        let (first, second) = chunk.as_mut_slices();
                        first.fill(7);
                        second.fill(9);
                        chunk.commit_all();
                    }
                }
            }
            Op::Poke(offset, value) => poke(ring.region(), offset, value),
            Op::Blocking => {
                let mut sides = (producer.take(), consumer.take());
                ok += blocking(&mut sides);
                (producer, consumer) = sides;
            }
            Op::Reclaim => {
                drop(producer.take());
                drop(consumer.take());
                producer = ring.producer().ok();
                consumer = ring.consumer().ok();
                ok += usize::from(producer.is_some()) + usize::from(consumer.is_some());
            }
        }
    }
    ok
}

fn run_mpmc(ring: &MpmcRing<u64>, ops: &[Op]) -> usize {
    let mut ok = 0;
    for op in ops {
        match *op {
            Op::Len => {
                let _ = ring.len();
                let _ = ring.is_empty();
                ok += 1;
            }
            Op::Pop => ok += usize::from(ring.pop().is_ok()),
            Op::Push(value) => ok += usize::from(ring.push(value).is_ok()),
            Op::PopBatch(n) => {
                for _ in 0..n {
                    ok += usize::from(matches!(ring.pop(), Ok(Some(_))));
                }
            }
            Op::PushBatch(n) => {
                for value in 0..n as u64 {
                    ok += usize::from(ring.push(value).is_ok());
                }
            }
            Op::Poke(offset, value) => poke(ring.region(), offset, value),
            Op::Blocking => {
                ok += usize::from(ring.push_blocking(1, Duration::ZERO).is_ok());
                ok += usize::from(ring.pop_blocking(Duration::ZERO).is_ok());
            }
            Op::Reclaim => {}
        }
    }
    ok
}

/// Opens each ring kind (of `u64`) from the region part of the input, and on
/// success runs the script's operations as a peer would: len, pop, push,
/// batch reads and writes, zero-timeout blocking calls, re-claiming the
/// sides, and a hostile peer's stores into the region between them. Returns
/// the number of successful opens and operations.
pub fn rings(bytes: &[u8]) -> usize {
    let (script, segment) = split_script(bytes);
    if segment.is_empty() || would_wait(segment) {
        return 0;
    }
    let ops = ops(script, segment.len());
    let mut ok = 0;
    for capacity in capacities(segment) {
        if let Ok(ring) = SpscRing::<u64>::open_in(region_from(segment).unwrap(), capacity) {
            ok += 1;
            ok += run_spsc(&ring, &ops, |(producer, consumer)| {
                let mut ok = 0;
                if let Some(producer) = producer.as_mut() {
                    ok += usize::from(producer.push_blocking(3, Duration::ZERO).is_ok());
                }
                if let Some(consumer) = consumer.as_mut() {
                    ok += usize::from(consumer.pop_blocking(Duration::ZERO).is_ok());
                }
                ok
            });
        }
        if let Ok(ring) =
            SpinningSpscRing::<u64>::open_spinning_in(region_from(segment).unwrap(), capacity)
        {
            ok += 1;
            ok += run_spsc(&ring, &ops, |_| 0);
        }
        if let Ok(ring) = MpmcRing::<u64>::open_in(region_from(segment).unwrap(), capacity) {
            ok += 1;
            ok += run_mpmc(&ring, &ops);
        }
    }
    ok
}

/// `describe` and `describe_unready` (with no OS creator, this process, and
/// an impossible pid) over the bytes. Returns how many gave `Some`.
pub fn describe(bytes: &[u8]) -> usize {
    let Some(region) = region_from(bytes) else {
        return 0;
    };
    let mut some = 0;
    if let Some(description) = describe_region(&region) {
        some += 1;
        let _ = description.header.type_description();
        let _ = format!("{description:?}");
        // What `shm inspect` shows: the C header, and an object's value
        // through its stored schema (bounded, whatever the schema).
        let _ = shm_typed::c_header(&description);
        if let (Some(Ok(schema)), Some(value)) = (
            &description.schema,
            shm_typed::object_value(&region, std::time::Duration::ZERO),
        ) {
            let _ = shm_typed::schema::render_value(schema, &value.bytes);
        }
    }
    for os_creator in [None, Some(std::process::id()), Some(u32::MAX)] {
        if let Some(unready) = describe_unready(&region, os_creator) {
            some += 1;
            let _ = format!("{unready:?}");
        }
    }
    some
}

/// The `schema` target: the schema block decoder an opener runs on a
/// segment's stored schema. Any input decodes to an error or to a descriptor
/// that re-encodes to exactly the input (the encoding is canonical), compares
/// identical to itself and renders as Rust and C without panicking.
pub fn schema(bytes: &[u8]) -> usize {
    use shm_typed::schema::{compare, decode, encode, render_c, render_rust, Compat};
    let Ok(descriptor) = decode(bytes) else {
        return 0;
    };
    assert_eq!(
        encode(&descriptor),
        bytes,
        "a decoded block re-encodes as read"
    );
    assert_eq!(compare(&descriptor, &descriptor), Ok(Compat::Identical));
    // A value of the type from the input's own bytes: bounded output.
    let shown = shm_typed::schema::render_value(&descriptor, bytes);
    assert!(
        shown.len() < 1 << 20,
        "render_value wrote {} bytes",
        shown.len()
    );
    let rendered = render_rust(&descriptor).len() + render_c(&descriptor).len();
    usize::from(rendered > 0)
}
