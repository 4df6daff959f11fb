//! [`Descriptor`]: the owned, validated description of a type, the form that
//! is encoded, decoded, compared and rendered.

use std::collections::HashSet;

use super::encoding::{encode, fnv1a, varint_len};
use super::error::SchemaError;
use super::layout::{Layout, LayoutKind, Primitive};
use super::{MAX_DEPTH, MAX_NAME_LEN, MAX_SCHEMA_LEN};

/// Alignments are powers of two up to 2^29, Rust's own limit.
pub(crate) const MAX_ALIGN_LOG2: u32 = 29;
/// No Rust type is larger than `isize::MAX` bytes.
const MAX_SIZE: u64 = i64::MAX as u64;

/// The structure of a type, validated: sizes, alignments, field offsets and
/// names, enum values, nested to at most [`MAX_DEPTH`] and encoding to at most
/// [`MAX_SCHEMA_LEN`] bytes.
///
/// Made from a type with [`ShmType::descriptor`](super::ShmType::descriptor),
/// from a schema block with [`decode`](super::decode), or piece by piece with
/// the constructors, which check every invariant the decoder checks (so a
/// `Descriptor` always encodes to a block that decodes back to itself):
///
/// ```
/// use shm_typed::schema::{Descriptor, Field, Primitive};
///
/// let point = Descriptor::structure(
///     "Point",
///     8,
///     4,
///     vec![
///         Field::new("x", 0, Descriptor::primitive(Primitive::F32)),
///         Field::new("y", 4, Descriptor::primitive(Primitive::F32)),
///     ],
///     false,
/// )?;
/// assert_eq!(point.type_name(), "Point");
/// // Overlapping fields are refused.
/// assert!(Descriptor::structure(
///     "Bad",
///     8,
///     4,
///     vec![
///         Field::new("x", 0, Descriptor::primitive(Primitive::U64)),
///         Field::new("y", 4, Descriptor::primitive(Primitive::U32)),
///     ],
///     false,
/// )
/// .is_err());
/// # Ok::<(), shm_typed::schema::SchemaError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Descriptor {
    size: u64,
    align: u64,
    kind: TypeKind,
    /// Nodes deep, 1 for a leaf.
    depth: usize,
    /// Bytes of this node's encoding (without the block's version byte).
    node_len: usize,
}

/// The kinds of [`Descriptor`], with their parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypeKind {
    /// An integer or float.
    Primitive(Primitive),
    /// `[element; len]`.
    Array {
        /// The element type.
        element: Box<Descriptor>,
        /// The number of elements.
        len: u64,
    },
    /// A `#[repr(C)]` struct.
    Struct {
        /// Its stable name.
        name: String,
        /// Its fields, by offset.
        fields: Vec<Field>,
        /// Whether later versions may append fields.
        extensible: bool,
    },
    /// A field-less enum with an integer representation.
    Enum {
        /// Its stable name.
        name: String,
        /// The integer it is stored as.
        repr: Primitive,
        /// Its variants, in declaration order.
        variants: Vec<Variant>,
    },
}

/// A field of a struct descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    /// Its name (`"0"`, `"1"`, ... in a tuple struct).
    pub name: String,
    /// Its offset from the start of the struct.
    pub offset: u64,
    /// Its type.
    pub ty: Descriptor,
}

impl Field {
    /// A field; checked when its struct is built.
    pub fn new(name: impl Into<String>, offset: u64, ty: Descriptor) -> Field {
        Field {
            name: name.into(),
            offset,
            ty,
        }
    }

    /// The offset just past it, if that fits 64 bits.
    fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.ty.size)
    }
}

/// A variant of an enum descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Its name.
    pub name: String,
    /// Its discriminant's bit pattern in the representation's width,
    /// zero-extended (`-1` of a `#[repr(i8)]` enum is `0xff`); see
    /// [`Variant::signed_value`].
    pub value: u64,
}

impl Variant {
    /// A variant; checked when its enum is built.
    pub fn new(name: impl Into<String>, value: u64) -> Variant {
        Variant {
            name: name.into(),
            value,
        }
    }

    /// The value as the signed integer of `width` bytes it is the bit pattern
    /// of (`0xff` of width 1 is -1).
    pub fn signed_value(&self, width: u64) -> i64 {
        let unused = 64u32.saturating_sub(width.saturating_mul(8).min(64) as u32);
        ((self.value << unused) as i64) >> unused
    }
}

fn check_name(what: &str, name: &str) -> Result<(), SchemaError> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_NAME_LEN {
        "is longer than 64 bytes"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(SchemaError::Invalid(format!(
        "{what} name {name:?} {reason}"
    )))
}

fn check_align(what: &str, align: u64) -> Result<(), SchemaError> {
    if align.is_power_of_two() && align.trailing_zeros() <= MAX_ALIGN_LOG2 {
        Ok(())
    } else {
        Err(SchemaError::Invalid(format!(
            "{what}: alignment {align} is not a power of two up to 2^29"
        )))
    }
}

fn name_len(name: &str) -> usize {
    varint_len(name.len() as u64) + name.len()
}

impl Descriptor {
    /// Checks the bounds every descriptor keeps and builds it.
    fn finish(
        size: u64,
        align: u64,
        kind: TypeKind,
        depth: usize,
        node_len: Option<usize>,
    ) -> Result<Descriptor, SchemaError> {
        if depth > MAX_DEPTH {
            return Err(SchemaError::TooDeep);
        }
        let node_len = node_len.unwrap_or(usize::MAX);
        if node_len >= MAX_SCHEMA_LEN {
            // The block adds one version byte.
            return Err(SchemaError::TooLarge {
                len: node_len.saturating_add(1),
            });
        }
        Ok(Descriptor {
            size,
            align,
            kind,
            depth,
            node_len,
        })
    }

    /// A primitive with this build's alignment.
    pub fn primitive(primitive: Primitive) -> Descriptor {
        Descriptor {
            size: primitive.size(),
            align: primitive.native_align(),
            kind: TypeKind::Primitive(primitive),
            depth: 1,
            node_len: 2,
        }
    }

    /// A primitive with the given alignment (another target's, say).
    ///
    /// # Errors
    ///
    /// [`SchemaError::Invalid`] unless `align` is a power of two at most the
    /// primitive's size.
    pub fn primitive_aligned(primitive: Primitive, align: u64) -> Result<Descriptor, SchemaError> {
        check_align(primitive.name(), align)?;
        if align > primitive.size() {
            return Err(SchemaError::Invalid(format!(
                "{}: alignment {align} exceeds its size",
                primitive.name()
            )));
        }
        Ok(Descriptor {
            align,
            ..Descriptor::primitive(primitive)
        })
    }

    /// `[element; len]`.
    ///
    /// # Errors
    ///
    /// [`SchemaError::Invalid`] if the size overflows, [`SchemaError::TooDeep`].
    pub fn array(element: Descriptor, len: u64) -> Result<Descriptor, SchemaError> {
        let size = element
            .size
            .checked_mul(len)
            .filter(|&size| size <= MAX_SIZE)
            .ok_or_else(|| {
                SchemaError::Invalid(format!(
                    "[{}; {len}] is larger than 2^63 bytes",
                    element.type_name()
                ))
            })?;
        let align = element.align;
        let depth = element.depth + 1;
        let node_len = (1 + varint_len(len)).checked_add(element.node_len);
        Descriptor::finish(
            size,
            align,
            TypeKind::Array {
                element: Box::new(element),
                len,
            },
            depth,
            node_len,
        )
    }

    /// A `#[repr(C)]` struct of `size` bytes aligned to `align`.
    ///
    /// Gaps between fields (padding) are allowed here and in a decoded block;
    /// `#[derive(ShmType)]` refuses types that have any.
    ///
    /// # Errors
    ///
    /// [`SchemaError::Invalid`] unless: the name and every field name are 1 to
    /// 64 bytes without control characters and the field names distinct;
    /// `align` is a power of two up to 2^29 and divides `size`; the fields are
    /// in offset order, do not overlap, end within `size`, and each is
    /// aligned to its type's alignment, which is at most `align`.
    /// [`SchemaError::TooDeep`], [`SchemaError::TooLarge`].
    pub fn structure(
        name: impl Into<String>,
        size: u64,
        align: u64,
        fields: Vec<Field>,
        extensible: bool,
    ) -> Result<Descriptor, SchemaError> {
        let name = name.into();
        check_name("struct", &name)?;
        check_align(&name, align)?;
        if size % align != 0 || size > MAX_SIZE {
            return Err(SchemaError::Invalid(format!(
                "struct {name}: size {size} is not a multiple of its alignment {align}"
            )));
        }
        let mut names = HashSet::with_capacity(fields.len());
        let mut end_of_previous = 0u64;
        let mut depth = 0;
        let mut node_len =
            Some(1 + name_len(&name) + varint_len(size) + 2 + varint_len(fields.len() as u64));
        for field in &fields {
            let at = |problem: String| {
                SchemaError::Invalid(format!("struct {name}, field {}: {problem}", field.name))
            };
            check_name("field", &field.name)?;
            if !names.insert(field.name.as_str()) {
                return Err(at("the name appears twice".into()));
            }
            if field.offset % field.ty.align != 0 {
                return Err(at(format!(
                    "offset {} is not a multiple of its alignment {}",
                    field.offset, field.ty.align
                )));
            }
            if field.ty.align > align {
                return Err(at(format!(
                    "its alignment {} exceeds the struct's {align}",
                    field.ty.align
                )));
            }
            if field.offset < end_of_previous {
                return Err(at(format!(
                    "offset {} overlaps the previous field, which ends at {end_of_previous}",
                    field.offset
                )));
            }
            let end = field.end().filter(|&end| end <= size).ok_or_else(|| {
                at(format!(
                    "offset {} + size {} ends past the struct's size {size}",
                    field.offset, field.ty.size
                ))
            })?;
            end_of_previous = end;
            depth = depth.max(field.ty.depth);
            node_len = node_len
                .and_then(|len| len.checked_add(name_len(&field.name)))
                .and_then(|len| len.checked_add(varint_len(field.offset)))
                .and_then(|len| len.checked_add(field.ty.node_len));
        }
        Descriptor::finish(
            size,
            align,
            TypeKind::Struct {
                name,
                fields,
                extensible,
            },
            depth + 1,
            node_len,
        )
    }

    /// A field-less enum stored as `repr`, with this build's alignment of it.
    ///
    /// # Errors
    ///
    /// As [`Descriptor::enumeration_aligned`].
    pub fn enumeration(
        name: impl Into<String>,
        repr: Primitive,
        variants: Vec<Variant>,
    ) -> Result<Descriptor, SchemaError> {
        Descriptor::enumeration_aligned(name, repr, repr.native_align(), variants)
    }

    /// A field-less enum stored as `repr`, aligned to `align`.
    ///
    /// # Errors
    ///
    /// [`SchemaError::Invalid`] unless `repr` is an integer of at most 64
    /// bits, `align` a power of two at most its size, there is at least one
    /// variant, names are 1 to 64 bytes without control characters and
    /// distinct, and values fit `repr` and are distinct.
    pub fn enumeration_aligned(
        name: impl Into<String>,
        repr: Primitive,
        align: u64,
        variants: Vec<Variant>,
    ) -> Result<Descriptor, SchemaError> {
        let name = name.into();
        check_name("enum", &name)?;
        let invalid = |problem: String| SchemaError::Invalid(format!("enum {name}: {problem}"));
        if !repr.is_enum_repr() {
            return Err(invalid(format!("{} cannot represent an enum", repr.name())));
        }
        check_align(&name, align)?;
        if align > repr.size() {
            return Err(invalid(format!("alignment {align} exceeds its size")));
        }
        if variants.is_empty() {
            return Err(invalid("no variants".into()));
        }
        let limit = if repr.size() >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * repr.size())) - 1
        };
        let mut names = HashSet::with_capacity(variants.len());
        let mut values = HashSet::with_capacity(variants.len());
        let mut node_len = Some(1 + name_len(&name) + 2 + varint_len(variants.len() as u64));
        for variant in &variants {
            check_name("variant", &variant.name)?;
            if !names.insert(variant.name.as_str()) {
                return Err(invalid(format!("variant {} appears twice", variant.name)));
            }
            if variant.value > limit {
                return Err(invalid(format!(
                    "variant {} = {:#x} does not fit {}",
                    variant.name,
                    variant.value,
                    repr.name()
                )));
            }
            if !values.insert(variant.value) {
                return Err(invalid(format!(
                    "variant {} repeats the value {:#x}",
                    variant.name, variant.value
                )));
            }
            node_len = node_len
                .and_then(|len| len.checked_add(name_len(&variant.name)))
                .and_then(|len| len.checked_add(varint_len(variant.value)));
        }
        Descriptor::finish(
            repr.size(),
            align,
            TypeKind::Enum {
                name,
                repr,
                variants,
            },
            1,
            node_len,
        )
    }

    /// The owned descriptor of a compile-time [`Layout`], validated.
    ///
    /// # Errors
    ///
    /// As the constructors, and [`SchemaError::Invalid`] if a layout's size or
    /// alignment contradicts its parts (a hand-written [`Layout`] can; derived
    /// and built-in ones cannot).
    pub fn from_layout(layout: &Layout) -> Result<Descriptor, SchemaError> {
        let descriptor = match layout.kind {
            LayoutKind::Primitive(primitive) => {
                Descriptor::primitive_aligned(primitive, layout.align as u64)?
            }
            LayoutKind::Array { element, len } => {
                Descriptor::array(Descriptor::from_layout(element)?, len as u64)?
            }
            LayoutKind::Struct {
                name,
                fields,
                extensible,
            } => {
                let fields = fields
                    .iter()
                    .map(|field| {
                        Ok(Field::new(
                            field.name,
                            field.offset as u64,
                            Descriptor::from_layout(field.layout)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, SchemaError>>()?;
                Descriptor::structure(
                    name,
                    layout.size as u64,
                    layout.align as u64,
                    fields,
                    extensible,
                )?
            }
            LayoutKind::Enum {
                name,
                repr,
                variants,
            } => Descriptor::enumeration_aligned(
                name,
                repr,
                layout.align as u64,
                variants
                    .iter()
                    .map(|variant| Variant::new(variant.name, variant.value))
                    .collect(),
            )?,
        };
        if descriptor.size != layout.size as u64 || descriptor.align != layout.align as u64 {
            return Err(SchemaError::Invalid(format!(
                "{}: the layout says size {} align {}, its parts make size {} align {}",
                descriptor.type_name(),
                layout.size,
                layout.align,
                descriptor.size,
                descriptor.align
            )));
        }
        Ok(descriptor)
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Its alignment in bytes.
    pub fn align(&self) -> u64 {
        self.align
    }

    /// Its kind and parts.
    pub fn kind(&self) -> &TypeKind {
        &self.kind
    }

    /// How many nodes deep it is: 1 for a primitive or an enum.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The length of its schema block, `encode(self).len()`.
    pub fn encoded_len(&self) -> usize {
        self.node_len + 1
    }

    /// The name of a struct or enum; `None` for primitives and arrays.
    pub fn name(&self) -> Option<&str> {
        match &self.kind {
            TypeKind::Struct { name, .. } | TypeKind::Enum { name, .. } => Some(name),
            TypeKind::Primitive(_) | TypeKind::Array { .. } => None,
        }
    }

    /// How the type is written in Rust: `u32`, `Tick`, `[Side; 4]`.
    pub fn type_name(&self) -> String {
        match &self.kind {
            TypeKind::Primitive(primitive) => primitive.name().to_owned(),
            TypeKind::Array { element, len } => format!("[{}; {len}]", element.type_name()),
            TypeKind::Struct { name, .. } | TypeKind::Enum { name, .. } => name.clone(),
        }
    }

    /// The structural fingerprint: FNV-1a 64 over [`encode`]`(self)`. Equal
    /// for equal descriptors in every build, on every platform; for a type,
    /// [`ShmType::fingerprint`](super::ShmType::fingerprint) gives the same
    /// value as a constant.
    pub fn fingerprint(&self) -> u64 {
        fnv1a(&encode(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_field(name: &str, offset: u64) -> Field {
        Field::new(name, offset, Descriptor::primitive(Primitive::U32))
    }

    fn invalid(result: Result<Descriptor, SchemaError>) -> String {
        match result {
            Err(SchemaError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn fields_past_the_end_are_refused() {
        let message = invalid(Descriptor::structure(
            "S",
            4,
            4,
            vec![u32_field("a", 4)],
            false,
        ));
        assert!(message.contains("ends past"), "{message}");
    }

    #[test]
    fn unsorted_fields_are_refused() {
        let message = invalid(Descriptor::structure(
            "S",
            8,
            4,
            vec![u32_field("a", 4), u32_field("b", 0)],
            false,
        ));
        assert!(message.contains("overlaps"), "{message}");
    }

    #[test]
    fn misaligned_fields_are_refused() {
        let message = invalid(Descriptor::structure(
            "S",
            8,
            4,
            vec![u32_field("a", 2)],
            false,
        ));
        assert!(message.contains("not a multiple"), "{message}");
    }

    #[test]
    fn duplicate_field_names_are_refused() {
        let message = invalid(Descriptor::structure(
            "S",
            8,
            4,
            vec![u32_field("a", 0), u32_field("a", 4)],
            false,
        ));
        assert!(message.contains("twice"), "{message}");
    }

    #[test]
    fn enum_values_must_fit_and_differ() {
        let too_big = Descriptor::enumeration("E", Primitive::U8, vec![Variant::new("A", 256)]);
        assert!(invalid(too_big).contains("does not fit u8"));
        let repeated = Descriptor::enumeration(
            "E",
            Primitive::U8,
            vec![Variant::new("A", 1), Variant::new("B", 1)],
        );
        assert!(invalid(repeated).contains("repeats"));
        let float = Descriptor::enumeration("E", Primitive::F32, vec![Variant::new("A", 1)]);
        assert!(invalid(float).contains("cannot represent"));
    }

    #[test]
    fn array_sizes_use_checked_multiplication() {
        let big =
            Descriptor::array(Descriptor::primitive(Primitive::U64), u64::MAX / 4).unwrap_err();
        assert!(matches!(big, SchemaError::Invalid(_)));
    }

    #[test]
    fn names_are_bounded() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(invalid(Descriptor::structure(long, 0, 1, vec![], false)).contains("longer"));
        assert!(invalid(Descriptor::structure("a\nb", 0, 1, vec![], false)).contains("control"));
    }

    #[test]
    fn signed_values_are_sign_extended_from_their_width() {
        assert_eq!(Variant::new("A", 0xff).signed_value(1), -1);
        assert_eq!(Variant::new("A", 0x7f).signed_value(1), 127);
        assert_eq!(Variant::new("A", u64::MAX).signed_value(8), -1);
    }
}
