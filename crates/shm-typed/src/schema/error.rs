//! [`SchemaError`]: why a schema block or a descriptor was refused.

/// Why a schema block could not be decoded, or a descriptor not built.
///
/// Offsets are byte positions in the block given to
/// [`decode`](super::decode).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The block ends inside a value.
    #[error("schema block ends inside a value at byte {offset}")]
    Truncated {
        /// Where the missing value starts.
        offset: usize,
    },
    /// The root node ends before the block does.
    #[error("schema block has bytes after its root node, from byte {offset}")]
    TrailingBytes {
        /// The first byte not consumed.
        offset: usize,
    },
    /// The version byte is not [`SCHEMA_VERSION`](super::SCHEMA_VERSION).
    #[error("schema block version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u8),
    /// A node starts with a tag no node has.
    #[error("unknown node tag {tag:#04x} at byte {offset} of the schema block")]
    UnknownTag {
        /// The tag byte.
        tag: u8,
        /// Where it is.
        offset: usize,
    },
    /// A varint is longer than its shortest form or does not fit 64 bits.
    #[error("malformed integer (overlong or over 64 bits) at byte {offset} of the schema block")]
    BadVarint {
        /// Where the varint starts.
        offset: usize,
    },
    /// A name is longer than [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes or not UTF-8.
    #[error("name at byte {offset} of the schema block is {reason}")]
    BadName {
        /// Where the name's length starts.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The block, or a descriptor's encoding, is longer than
    /// [`MAX_SCHEMA_LEN`](super::MAX_SCHEMA_LEN).
    #[error("schema of {len} bytes exceeds the limit of 65536")]
    TooLarge {
        /// Its length in bytes (for a descriptor being built: at least this).
        len: usize,
    },
    /// Types nest deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("types nest more than 16 deep")]
    TooDeep,
    /// The description contradicts itself: a field outside its struct,
    /// overlapping fields, a size that does not match, a duplicate name, ...
    #[error("inconsistent schema: {0}")]
    Invalid(String),
}
