//! The store's directory: where its parts lie ([`Layout`], derived from the
//! header once), the 128-byte records that name its entries ([`Record`], the
//! one encoder and decoder of their bytes), and the rules for names.

use crate::error::{Error, Result};
use crate::location::Location;
use crate::segment::format::{Header, Kind, PAYLOAD_OFFSET};
use crate::segment::header::Spec;
use crate::segment::region::REGION_ALIGN;

use super::{DIRECTORY, MAX_NAME, RECORD, STORE_TYPE};

/// A directory record, as the bytes in the segment lay it out.
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 48 | name (UTF-8) |
/// | 48 | 1 | name length |
/// | 49 | 1 | kind code (1 object, 2 spsc ring, 3 mpmc ring) |
/// | 56 | 8 | offset of the entry's segment from the store's start |
/// | 64 | 8 | length of the entry's segment |
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) offset: usize,
    pub(super) len: usize,
}

impl Record {
    /// Decodes record `index` as copied out of the directory, checking every
    /// field: a UTF-8 name of at most [`MAX_NAME`] bytes, an entry kind, and a
    /// page-aligned, non-empty range inside the arena (from `arena_start` to
    /// `store_len`). The error says what is wrong.
    pub(super) fn decode(
        bytes: &[u8; RECORD],
        index: u64,
        arena_start: usize,
        store_len: usize,
    ) -> Result<Record, String> {
        let name_len = usize::from(bytes[48]).min(MAX_NAME);
        let name = std::str::from_utf8(&bytes[..name_len])
            .map_err(|_| format!("entry {index} has a name that is not UTF-8"))?
            .to_owned();
        // Only the kinds a store makes entries of.
        let kind = Kind::from_code(u32::from(bytes[49]))
            .filter(|kind| matches!(kind, Kind::Object | Kind::SpscRing | Kind::MpmcRing))
            .ok_or_else(|| format!("entry {name:?} has kind code {}", bytes[49]))?;
        let word = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_ne_bytes(word)
        };
        let (offset, len) = (word(56), word(64));
        let range = usize::try_from(offset).ok().zip(usize::try_from(len).ok());
        match range {
            Some((start, size))
                if start >= arena_start
                    && start % REGION_ALIGN == 0
                    && size > 0
                    && start.checked_add(size).is_some_and(|end| end <= store_len) =>
            {
                Ok(Record {
                    name,
                    kind,
                    offset: start,
                    len: size,
                })
            }
            _ => Err(format!(
                "entry {name:?} claims bytes {offset}..+{len} of a {store_len}-byte store"
            )),
        }
    }

    /// The bytes of the record (the name is a checked one: at most
    /// [`MAX_NAME`] bytes).
    pub(super) fn encode(&self) -> [u8; RECORD] {
        let mut bytes = [0u8; RECORD];
        let name = &self.name.as_bytes()[..self.name.len().min(MAX_NAME)];
        bytes[..name.len()].copy_from_slice(name);
        bytes[48] = name.len() as u8;
        bytes[49] = self.kind as u8;
        bytes[56..64].copy_from_slice(&(self.offset as u64).to_ne_bytes());
        bytes[64..72].copy_from_slice(&(self.len as u64).to_ne_bytes());
        bytes
    }
}

/// Where a store's parts lie: derived from the header once, checked, and
/// then trusted (the header is copied out; peers cannot change this copy).
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    /// Directory capacity in records.
    pub(super) entries: u64,
    /// Segment length the header records (at most the OS's, checked on open).
    pub(super) segment_len: usize,
    /// First arena byte: the directory's end rounded up to a page, at most
    /// `segment_len`.
    pub(super) arena_start: usize,
}

/// The directory's end rounded up to a page, if that is an address at all.
pub(super) fn arena_start(entries: u64) -> Option<usize> {
    usize::try_from(entries)
        .ok()?
        .checked_mul(RECORD)?
        .checked_add(DIRECTORY)?
        .checked_next_multiple_of(REGION_ALIGN)
}

impl Layout {
    /// [`Layout::of`] with the spec it implies, for [`Segment::open_derived`].
    pub(super) fn derive(
        location: &Location,
    ) -> impl FnOnce(&Header) -> Result<(Spec, Layout)> + '_ {
        move |header| {
            let layout = Layout::of(header, location)?;
            Ok((layout.spec(), layout))
        }
    }

    /// The layout a header describes: [`Error::Corrupted`] unless the
    /// directory of `capacity` records ends inside `segment_len`.
    pub(super) fn of(header: &Header, location: &Location) -> Result<Layout> {
        let entries = header.layout.capacity;
        let segment_len = usize::try_from(header.segment_len).ok();
        match (arena_start(entries), segment_len) {
            (Some(arena_start), Some(segment_len)) if arena_start <= segment_len => Ok(Layout {
                entries,
                segment_len,
                arena_start,
            }),
            _ => Err(Error::Corrupted {
                location: location.clone(),
                what: format!(
                    "a store of {entries} entries cannot fit {} bytes",
                    header.segment_len
                ),
            }),
        }
    }

    /// What the store's header records: its type, directory capacity and
    /// length (`segment_len` >= `arena_start` >= a page > the payload offset).
    pub(super) fn spec(&self) -> Spec {
        Spec {
            kind: Kind::Store,
            payload_offset: PAYLOAD_OFFSET as u64,
            payload_size: self.segment_len.saturating_sub(PAYLOAD_OFFSET) as u64,
            payload_align: 8,
            element_size: RECORD as u32,
            capacity: self.entries,
            type_name: STORE_TYPE.to_owned(),
            schema: None,
            accepts_prefix: false,
        }
    }
}

/// Checks a name: 1 to 48 bytes of letters, digits and `-_./:`.
pub(super) fn check_name(location: &Location, name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_NAME {
        Some(format!(
            "it is {} bytes long, the limit is {MAX_NAME}",
            name.len()
        ))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_./:".contains(*c)))
            .map(|c| format!("{c:?} is not allowed (letters, digits and -_./: are)"))
    };
    match why {
        Some(why) => Err(Error::InvalidName {
            location: location.clone(),
            name: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}
