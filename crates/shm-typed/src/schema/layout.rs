//! [`Layout`]: the compile-time form of a descriptor, built in a `const` by
//! `#[derive(ShmType)]`, and the `const fn` walk over it that yields the
//! fingerprint and the encoded length without allocating.

use super::encoding::{
    fnv1a_step, varint_len, FNV_OFFSET, SCHEMA_VERSION, TAG_ARRAY, TAG_ENUM, TAG_STRUCT,
};
use super::MAX_NAME_LEN;

/// A scalar type: the leaves of every descriptor.
///
/// `bool` and `char` are deliberately absent: not every bit pattern is a valid
/// value of theirs, so they are not [`bytemuck::Pod`] and cannot be placed in a
/// segment that another process may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // the variant names are the Rust type names
pub enum Primitive {
    U8,
    U16,
    U32,
    U64,
    U128,
    I8,
    I16,
    I32,
    I64,
    I128,
    F32,
    F64,
}

impl Primitive {
    /// Every primitive, in tag order.
    pub const ALL: [Primitive; 12] = [
        Primitive::U8,
        Primitive::U16,
        Primitive::U32,
        Primitive::U64,
        Primitive::U128,
        Primitive::I8,
        Primitive::I16,
        Primitive::I32,
        Primitive::I64,
        Primitive::I128,
        Primitive::F32,
        Primitive::F64,
    ];

    /// Its tag byte in the schema block (1 to 12).
    pub const fn tag(self) -> u8 {
        match self {
            Primitive::U8 => 1,
            Primitive::U16 => 2,
            Primitive::U32 => 3,
            Primitive::U64 => 4,
            Primitive::U128 => 5,
            Primitive::I8 => 6,
            Primitive::I16 => 7,
            Primitive::I32 => 8,
            Primitive::I64 => 9,
            Primitive::I128 => 10,
            Primitive::F32 => 11,
            Primitive::F64 => 12,
        }
    }

    /// The primitive with this tag, if any.
    pub const fn from_tag(tag: u8) -> Option<Primitive> {
        if tag >= 1 && tag <= 12 {
            Some(Primitive::ALL[(tag - 1) as usize])
        } else {
            None
        }
    }

    /// Its size in bytes, the same on every platform.
    pub const fn size(self) -> u64 {
        match self {
            Primitive::U8 | Primitive::I8 => 1,
            Primitive::U16 | Primitive::I16 => 2,
            Primitive::U32 | Primitive::I32 | Primitive::F32 => 4,
            Primitive::U64 | Primitive::I64 | Primitive::F64 => 8,
            Primitive::U128 | Primitive::I128 => 16,
        }
    }

    /// Its alignment in this build (`align_of`); `u128`'s and `u64`'s differ
    /// between targets and compiler versions, which is why descriptors record it.
    pub const fn native_align(self) -> u64 {
        (match self {
            Primitive::U8 => align_of::<u8>(),
            Primitive::U16 => align_of::<u16>(),
            Primitive::U32 => align_of::<u32>(),
            Primitive::U64 => align_of::<u64>(),
            Primitive::U128 => align_of::<u128>(),
            Primitive::I8 => align_of::<i8>(),
            Primitive::I16 => align_of::<i16>(),
            Primitive::I32 => align_of::<i32>(),
            Primitive::I64 => align_of::<i64>(),
            Primitive::I128 => align_of::<i128>(),
            Primitive::F32 => align_of::<f32>(),
            Primitive::F64 => align_of::<f64>(),
        }) as u64
    }

    /// The Rust name: `u32`, `f64`, ...
    pub const fn name(self) -> &'static str {
        match self {
            Primitive::U8 => "u8",
            Primitive::U16 => "u16",
            Primitive::U32 => "u32",
            Primitive::U64 => "u64",
            Primitive::U128 => "u128",
            Primitive::I8 => "i8",
            Primitive::I16 => "i16",
            Primitive::I32 => "i32",
            Primitive::I64 => "i64",
            Primitive::I128 => "i128",
            Primitive::F32 => "f32",
            Primitive::F64 => "f64",
        }
    }

    /// Whether it may be the representation of an enum (`u8` to `u64`, `i8` to `i64`).
    pub const fn is_enum_repr(self) -> bool {
        !matches!(
            self,
            Primitive::U128 | Primitive::I128 | Primitive::F32 | Primitive::F64
        )
    }

    /// Whether it is a signed integer.
    pub const fn is_signed(self) -> bool {
        matches!(
            self,
            Primitive::I8 | Primitive::I16 | Primitive::I32 | Primitive::I64 | Primitive::I128
        )
    }
}

/// The layout of a type, known at compile time: what [`ShmType::LAYOUT`]
/// holds. Everything in it is `'static` and `Copy`, so `#[derive(ShmType)]`
/// builds it in a `const`; [`Descriptor::from_layout`] turns it into the
/// owned, validated form that is encoded, compared and rendered.
///
/// A `Layout` is only a description: nothing relies on it for memory safety
/// (see the [module documentation](super#why-a-safe-trait)).
///
/// [`ShmType::LAYOUT`]: super::ShmType::LAYOUT
/// [`Descriptor::from_layout`]: super::Descriptor::from_layout
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// `size_of` the type.
    pub size: usize,
    /// `align_of` the type.
    pub align: usize,
    /// What kind of type it is, with its parts.
    pub kind: LayoutKind,
}

/// The kinds of [`Layout`].
#[derive(Debug, Clone, Copy)]
pub enum LayoutKind {
    /// An integer or float.
    Primitive(Primitive),
    /// `[element; len]`.
    Array {
        /// The element's layout.
        element: &'static Layout,
        /// The number of elements.
        len: usize,
    },
    /// A `#[repr(C)]` struct.
    Struct {
        /// Its stable name.
        name: &'static str,
        /// Its fields, in declaration (and so offset) order.
        fields: &'static [FieldLayout],
        /// Whether later versions may append fields (`#[shm(extensible)]`).
        extensible: bool,
    },
    /// A field-less enum with an integer representation.
    Enum {
        /// Its stable name.
        name: &'static str,
        /// The `#[repr(..)]` integer.
        repr: Primitive,
        /// Its variants, in declaration order.
        variants: &'static [VariantLayout],
    },
}

/// One field of a [`LayoutKind::Struct`].
#[derive(Debug, Clone, Copy)]
pub struct FieldLayout {
    /// The field's name (`"0"`, `"1"`, ... in a tuple struct).
    pub name: &'static str,
    /// `offset_of!` the field.
    pub offset: usize,
    /// The layout of its type.
    pub layout: &'static Layout,
}

/// One variant of a [`LayoutKind::Enum`].
#[derive(Debug, Clone, Copy)]
pub struct VariantLayout {
    /// The variant's name.
    pub name: &'static str,
    /// Its discriminant's bit pattern in the representation's width,
    /// zero-extended: `-1` of a `#[repr(i8)]` enum is `0xff`.
    pub value: u64,
}

/// The running FNV-1a state and byte count of a walk.
#[derive(Clone, Copy)]
struct Sink {
    hash: u64,
    len: usize,
}

impl Sink {
    const fn byte(self, byte: u8) -> Sink {
        Sink {
            hash: fnv1a_step(self.hash, byte),
            len: self.len.saturating_add(1),
        }
    }

    const fn varint(self, mut value: u64) -> Sink {
        let mut sink = self;
        loop {
            let low = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                return sink.byte(low);
            }
            sink = sink.byte(low | 0x80);
        }
    }

    const fn name(self, name: &str) -> Sink {
        let bytes = name.as_bytes();
        let mut sink = self.varint(bytes.len() as u64);
        let mut index = 0;
        while index < bytes.len() {
            sink = sink.byte(bytes[index]);
            index += 1;
        }
        sink
    }
}

const fn align_log2(align: usize) -> u8 {
    align.trailing_zeros() as u8
}

/// Feeds `layout`'s node, exactly as [`encode`](super::encode) writes it.
const fn walk(layout: &Layout, sink: Sink) -> Sink {
    match layout.kind {
        LayoutKind::Primitive(primitive) => {
            sink.byte(primitive.tag()).byte(align_log2(layout.align))
        }
        LayoutKind::Array { element, len } => {
            walk(element, sink.byte(TAG_ARRAY).varint(len as u64))
        }
        LayoutKind::Struct {
            name,
            fields,
            extensible,
        } => {
            let mut sink = sink
                .byte(TAG_STRUCT)
                .name(name)
                .varint(layout.size as u64)
                .byte(align_log2(layout.align))
                .byte(extensible as u8)
                .varint(fields.len() as u64);
            let mut index = 0;
            while index < fields.len() {
                let field = &fields[index];
                sink = walk(
                    field.layout,
                    sink.name(field.name).varint(field.offset as u64),
                );
                index += 1;
            }
            sink
        }
        LayoutKind::Enum {
            name,
            repr,
            variants,
        } => {
            let mut sink = sink
                .byte(TAG_ENUM)
                .name(name)
                .byte(repr.tag())
                .byte(align_log2(layout.align))
                .varint(variants.len() as u64);
            let mut index = 0;
            while index < variants.len() {
                sink = sink
                    .name(variants[index].name)
                    .varint(variants[index].value);
                index += 1;
            }
            sink
        }
    }
}

impl Layout {
    /// The structural fingerprint: FNV-1a 64 over the canonical encoding, the
    /// same as [`Descriptor::fingerprint`](super::Descriptor::fingerprint) of
    /// the descriptor made from this layout. A `const fn`, so
    /// [`ShmType::fingerprint`](super::ShmType::fingerprint) is a constant.
    pub const fn fingerprint(&self) -> u64 {
        let start = Sink {
            hash: FNV_OFFSET,
            len: 0,
        };
        walk(self, start.byte(SCHEMA_VERSION)).hash
    }

    /// The length of the canonical encoding, in bytes.
    pub const fn encoded_len(&self) -> usize {
        let start = Sink { hash: 0, len: 0 };
        walk(self, start.byte(SCHEMA_VERSION)).len
    }

    /// How many nodes deep the layout is: 1 for a primitive, one more for each
    /// struct, array or enum around it.
    pub const fn depth(&self) -> usize {
        match self.kind {
            LayoutKind::Primitive(_) | LayoutKind::Enum { .. } => 1,
            LayoutKind::Array { element, .. } => 1 + element.depth(),
            LayoutKind::Struct { fields, .. } => {
                let mut deepest = 0;
                let mut index = 0;
                while index < fields.len() {
                    let depth = fields[index].layout.depth();
                    if depth > deepest {
                        deepest = depth;
                    }
                    index += 1;
                }
                1 + deepest
            }
        }
    }
}

// `#[derive(ShmType)]` checks names against 64 bytes while expanding.
const _: () = assert!(MAX_NAME_LEN == 64);

const _: () = assert!(varint_len(0) == 1 && varint_len(u64::MAX) == 10);

/// Whether a field of layout `field` holds the bits of a `described` (for
/// the derive's `#[shm(as = T)]`): the same layout, an enum in its integer
/// repr, or an array of such of the same length. Size and alignment must
/// agree too.
#[doc(hidden)]
pub const fn holds(described: &Layout, field: &Layout) -> bool {
    if described.size != field.size || described.align != field.align {
        return false;
    }
    match (described.kind, field.kind) {
        (LayoutKind::Enum { repr, .. }, LayoutKind::Primitive(primitive))
        | (LayoutKind::Primitive(repr), LayoutKind::Primitive(primitive)) => {
            repr.tag() == primitive.tag()
        }
        (
            LayoutKind::Array { element, len },
            LayoutKind::Array {
                element: field_element,
                len: field_len,
            },
        ) => len == field_len && holds(element, field_element),
        // Structs: derive the field's own type instead.
        _ => false,
    }
}
