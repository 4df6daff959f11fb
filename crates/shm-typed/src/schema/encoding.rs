//! The schema block: [`encode`] writes a descriptor's canonical bytes,
//! [`decode`] reads untrusted bytes back, bounded in size and depth. The byte
//! format is documented in `docs/FORMAT.md`, section "Schema block".
//!
//! The decoder is safe code with checked arithmetic only: on any input it
//! returns a valid [`Descriptor`] or a [`SchemaError`], in debug and release
//! builds alike, using at most [`MAX_DEPTH`] frames of recursion and memory
//! proportional to the input (at most [`MAX_SCHEMA_LEN`] bytes).

use super::descriptor::{Descriptor, Field, TypeKind, Variant};
use super::error::SchemaError;
use super::layout::Primitive;
use super::{MAX_DEPTH, MAX_SCHEMA_LEN};

/// The version byte that opens every schema block this build writes and reads.
pub const SCHEMA_VERSION: u8 = 1;
/// Tag of an array node (primitives use their [`Primitive::tag`], 1 to 12).
pub(crate) const TAG_ARRAY: u8 = 0x20;
/// Tag of a struct node.
pub(crate) const TAG_STRUCT: u8 = 0x21;
/// Tag of an enum node.
pub(crate) const TAG_ENUM: u8 = 0x22;
/// The only flag of a struct node: the struct may gain fields at its end.
pub(crate) const FLAG_EXTENSIBLE: u8 = 0x01;

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub(crate) const fn fnv1a_step(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(FNV_PRIME)
}

/// FNV-1a 64 of `bytes`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(FNV_OFFSET, |hash, &byte| fnv1a_step(hash, byte))
}

/// Bytes of `value` as an unsigned LEB128 varint.
pub(crate) const fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// The canonical encoding of `descriptor`: the version byte, then its nodes
/// in pre-order. Equal descriptors encode to equal bytes and unequal ones to
/// unequal bytes; [`decode`] accepts every encoding this returns.
///
/// ```
/// use shm_typed::schema::{decode, encode, ShmType};
///
/// let descriptor = <[u32; 4]>::descriptor();
/// let bytes = encode(&descriptor);
/// assert_eq!(bytes, [1, 0x20, 4, 3, 2]); // version, array of 4, u32 aligned to 2^2
/// assert_eq!(decode(&bytes)?, descriptor);
/// # Ok::<(), shm_typed::schema::SchemaError>(())
/// ```
pub fn encode(descriptor: &Descriptor) -> Vec<u8> {
    let mut out = Vec::with_capacity(descriptor.encoded_len());
    out.push(SCHEMA_VERSION);
    encode_node(descriptor, &mut out);
    out
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    push_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

fn align_log2(align: u64) -> u8 {
    align.trailing_zeros() as u8
}

fn encode_node(descriptor: &Descriptor, out: &mut Vec<u8>) {
    match descriptor.kind() {
        TypeKind::Primitive(primitive) => {
            out.push(primitive.tag());
            out.push(align_log2(descriptor.align()));
        }
        TypeKind::Array { element, len } => {
            out.push(TAG_ARRAY);
            push_varint(out, *len);
            encode_node(element, out);
        }
        TypeKind::Struct {
            name,
            fields,
            extensible,
        } => {
            out.push(TAG_STRUCT);
            push_name(out, name);
            push_varint(out, descriptor.size());
            out.push(align_log2(descriptor.align()));
            out.push(if *extensible { FLAG_EXTENSIBLE } else { 0 });
            push_varint(out, fields.len() as u64);
            for field in fields {
                push_name(out, &field.name);
                push_varint(out, field.offset);
                encode_node(&field.ty, out);
            }
        }
        TypeKind::Enum {
            name,
            repr,
            variants,
        } => {
            out.push(TAG_ENUM);
            push_name(out, name);
            out.push(repr.tag());
            out.push(align_log2(descriptor.align()));
            push_varint(out, variants.len() as u64);
            for variant in variants {
                push_name(out, &variant.name);
                push_varint(out, variant.value);
            }
        }
    }
}

/// Reads a schema block written by [`encode`] (by this or another process),
/// treating it as hostile: every length, count and offset is checked before
/// use, the whole block must be consumed, and the result is a descriptor that
/// passed the same validation as one built with the [`Descriptor`]
/// constructors.
///
/// # Errors
///
/// [`SchemaError::TooLarge`] for more than [`MAX_SCHEMA_LEN`] bytes,
/// [`SchemaError::UnsupportedVersion`], [`SchemaError::Truncated`],
/// [`SchemaError::TrailingBytes`], [`SchemaError::UnknownTag`],
/// [`SchemaError::BadVarint`], [`SchemaError::TooDeep`] beyond
/// [`MAX_DEPTH`], and [`SchemaError::Invalid`] / [`SchemaError::BadName`]
/// for an inconsistent description.
///
/// ```
/// use shm_typed::schema::{decode, SchemaError};
///
/// assert!(matches!(decode(&[]), Err(SchemaError::Truncated { .. })));
/// assert!(matches!(decode(&[9, 3, 2]), Err(SchemaError::UnsupportedVersion(9))));
/// assert_eq!(decode(&[1, 3, 2])?.size(), 4); // a u32
/// # Ok::<(), SchemaError>(())
/// ```
pub fn decode(bytes: &[u8]) -> Result<Descriptor, SchemaError> {
    if bytes.len() > MAX_SCHEMA_LEN {
        return Err(SchemaError::TooLarge { len: bytes.len() });
    }
    let mut reader = Reader { bytes, at: 0 };
    let version = reader.byte()?;
    if version != SCHEMA_VERSION {
        return Err(SchemaError::UnsupportedVersion(version));
    }
    let root = reader.node(1)?;
    if reader.at != bytes.len() {
        return Err(SchemaError::TrailingBytes { offset: reader.at });
    }
    Ok(root)
}

/// A cursor over the untrusted block.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, SchemaError> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or(SchemaError::Truncated { offset: self.at })?;
        self.at += 1;
        Ok(byte)
    }

    /// An unsigned LEB128 varint in its shortest form, at most 64 bits.
    fn varint(&mut self) -> Result<u64, SchemaError> {
        let start = self.at;
        let mut value: u64 = 0;
        for index in 0..10u32 {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            let shift = 7 * index;
            // The 10th byte holds bit 63 only.
            if index == 9 && bits > 1 {
                return Err(SchemaError::BadVarint { offset: start });
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                // A zero last byte after others is an overlong form.
                if index > 0 && bits == 0 {
                    return Err(SchemaError::BadVarint { offset: start });
                }
                return Ok(value);
            }
        }
        Err(SchemaError::BadVarint { offset: start })
    }

    fn align(&mut self) -> Result<u64, SchemaError> {
        let offset = self.at;
        let log2 = self.byte()?;
        if u32::from(log2) > super::descriptor::MAX_ALIGN_LOG2 {
            return Err(SchemaError::Invalid(format!(
                "alignment 2^{log2} at byte {offset} is larger than 2^29"
            )));
        }
        Ok(1u64 << log2)
    }

    fn name(&mut self) -> Result<String, SchemaError> {
        let offset = self.at;
        let len = self.varint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= super::MAX_NAME_LEN)
            .ok_or(SchemaError::BadName {
                offset,
                reason: "longer than 64 bytes",
            })?;
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(SchemaError::Truncated { offset: self.at })?;
        let text =
            std::str::from_utf8(&self.bytes[self.at..end]).map_err(|_| SchemaError::BadName {
                offset,
                reason: "not UTF-8",
            })?;
        self.at = end;
        Ok(text.to_owned())
    }

    /// One node at nesting `depth` (the root is 1).
    fn node(&mut self, depth: usize) -> Result<Descriptor, SchemaError> {
        if depth > MAX_DEPTH {
            return Err(SchemaError::TooDeep);
        }
        let offset = self.at;
        let tag = self.byte()?;
        if let Some(primitive) = Primitive::from_tag(tag) {
            let align = self.align()?;
            return Descriptor::primitive_aligned(primitive, align);
        }
        match tag {
            TAG_ARRAY => {
                let len = self.varint()?;
                let element = self.node(depth + 1)?;
                Descriptor::array(element, len)
            }
            TAG_STRUCT => {
                let name = self.name()?;
                let size = self.varint()?;
                let align = self.align()?;
                let flags_at = self.at;
                let flags = self.byte()?;
                if flags & !FLAG_EXTENSIBLE != 0 {
                    return Err(SchemaError::Invalid(format!(
                        "unknown struct flags {flags:#04x} at byte {flags_at}"
                    )));
                }
                let count = self.varint()?;
                // No preallocation from an untrusted count: each field takes
                // at least three bytes, so the loop ends by running out.
                let mut fields = Vec::new();
                for _ in 0..count {
                    let field_name = self.name()?;
                    let field_offset = self.varint()?;
                    let ty = self.node(depth + 1)?;
                    fields.push(Field {
                        name: field_name,
                        offset: field_offset,
                        ty,
                    });
                }
                Descriptor::structure(name, size, align, fields, flags & FLAG_EXTENSIBLE != 0)
            }
            TAG_ENUM => {
                let name = self.name()?;
                let repr_at = self.at;
                let repr = Primitive::from_tag(self.byte()?)
                    .filter(|repr| repr.is_enum_repr())
                    .ok_or_else(|| {
                        SchemaError::Invalid(format!(
                            "enum representation at byte {repr_at} is not an integer of at most 64 bits"
                        ))
                    })?;
                let align = self.align()?;
                let count = self.varint()?;
                let mut variants = Vec::new();
                for _ in 0..count {
                    let variant_name = self.name()?;
                    let value = self.varint()?;
                    variants.push(Variant {
                        name: variant_name,
                        value,
                    });
                }
                Descriptor::enumeration_aligned(name, repr, align, variants)
            }
            _ => Err(SchemaError::UnknownTag { tag, offset }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        push_varint(&mut out, value);
        out
    }

    #[test]
    fn varints_round_trip_at_their_edges() {
        for value in [
            0,
            1,
            0x7f,
            0x80,
            0x3fff,
            0x4000,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let bytes = varint_bytes(value);
            assert_eq!(bytes.len(), varint_len(value));
            let mut reader = Reader {
                bytes: &bytes,
                at: 0,
            };
            assert_eq!(reader.varint().unwrap(), value);
            assert_eq!(reader.at, bytes.len());
        }
    }

    #[test]
    fn overlong_and_overflowing_varints_are_refused() {
        for bytes in [
            &[0x80, 0x00][..],
            &[0xff, 0x80, 0x00],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0x80; 11],
        ] {
            let mut reader = Reader { bytes, at: 0 };
            assert!(matches!(
                reader.varint(),
                Err(SchemaError::BadVarint { offset: 0 })
            ));
        }
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert!(matches!(
            decode(&[1, 3, 2, 0]),
            Err(SchemaError::TrailingBytes { offset: 3 })
        ));
    }

    #[test]
    fn oversized_blocks_are_refused_before_reading() {
        let bytes = vec![1u8; MAX_SCHEMA_LEN + 1];
        assert!(matches!(decode(&bytes), Err(SchemaError::TooLarge { .. })));
    }

    #[test]
    fn nesting_deeper_than_the_bound_is_refused() {
        // Arrays of one element, MAX_DEPTH + 1 deep around a u8.
        let mut bytes = vec![SCHEMA_VERSION];
        for _ in 0..MAX_DEPTH {
            bytes.extend_from_slice(&[TAG_ARRAY, 1]);
        }
        bytes.extend_from_slice(&[Primitive::U8.tag(), 0]);
        assert!(matches!(decode(&bytes), Err(SchemaError::TooDeep)));
        // One level less is fine.
        let ok: Vec<u8> = [SCHEMA_VERSION]
            .into_iter()
            .chain(bytes[3..].iter().copied())
            .collect();
        assert_eq!(decode(&ok).unwrap().depth(), MAX_DEPTH);
    }
}
