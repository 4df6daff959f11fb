//! [`compare`]: does the type a process holds match the one a segment was
//! made for?

use std::fmt;

use super::descriptor::{Descriptor, Field, TypeKind, Variant};

/// How a local type relates to a stored one, when it may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// The same structure in every byte: the same encoding and fingerprint.
    Identical,
    /// The local struct is a strict prefix of the stored one: both are
    /// `#[shm(extensible)]`, have the same name, and the local fields are the
    /// stored struct's first fields exactly (names, offsets, types); the
    /// stored one has more after them. The local type is no larger and no
    /// more aligned. A reader may read the prefix; it must not write (it
    /// would not preserve the fields it does not know), so callers should
    /// allow read-only access only.
    Prefix,
}

/// The first difference between a local type and a stored one.
///
/// Displayed as `field b: offset 4 u32 here, offset 0 f32 in segment`, with
/// the path through nested structs and arrays (`field pos.x: ...`,
/// `field points[].x: ...`), `type: ...` for the types themselves, and
/// `missing` for a field or variant one side lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Where: field names joined by `.`, `[]` for an array's element; empty
    /// for the type itself.
    pub path: String,
    /// What the local type has there; `None` if it lacks it.
    pub here: Option<String>,
    /// What the stored type has there; `None` if it lacks it.
    pub in_segment: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str("type: ")?;
        } else {
            write!(f, "field {}: ", self.path)?;
        }
        let side = |side: &Option<String>| side.as_deref().unwrap_or("missing").to_owned();
        write!(
            f,
            "{} here, {} in segment",
            side(&self.here),
            side(&self.in_segment)
        )
    }
}

impl std::error::Error for Mismatch {}

/// Compares `local` (the type this process uses) with `stored` (the one the
/// segment records).
///
/// # Errors
///
/// The first [`Mismatch`]: fields are matched by name in the local
/// declaration order, so a swap, a rename or a changed type names the field
/// with both sides' offset and type; a field only the segment has is reported
/// after every local one matched.
///
/// ```
/// use shm_typed::schema::{compare, Compat, ShmType};
///
/// mod writer {
///     #[derive(Clone, Copy, shm_typed::ShmType)]
///     #[repr(C)]
///     pub struct S { pub a: u32, pub b: f32 }
/// }
/// mod reader {
///     #[derive(Clone, Copy, shm_typed::ShmType)]
///     #[repr(C)]
///     pub struct S { pub b: f32, pub a: u32 }
/// }
/// let stored = writer::S::descriptor();
/// assert_eq!(compare(&stored, &stored), Ok(Compat::Identical));
/// let mismatch = compare(&reader::S::descriptor(), &stored).unwrap_err();
/// assert_eq!(mismatch.to_string(), "field b: offset 0 f32 here, offset 4 f32 in segment");
/// ```
pub fn compare(local: &Descriptor, stored: &Descriptor) -> Result<Compat, Mismatch> {
    if local == stored {
        return Ok(Compat::Identical);
    }
    if is_prefix(local, stored) {
        return Ok(Compat::Prefix);
    }
    Err(difference(String::new(), local, stored))
}

fn is_prefix(local: &Descriptor, stored: &Descriptor) -> bool {
    match (local.kind(), stored.kind()) {
        (
            TypeKind::Struct {
                name: local_name,
                fields: local_fields,
                extensible: true,
            },
            TypeKind::Struct {
                name: stored_name,
                fields: stored_fields,
                extensible: true,
            },
        ) => {
            local_name == stored_name
                && local_fields.len() < stored_fields.len()
                && stored_fields.starts_with(local_fields)
                && local.size() <= stored.size()
                && local.align() <= stored.align()
        }
        _ => false,
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// How a type is shown in a mismatch: `u32`, `Tick`, `Side (enum u8)`, `[u32; 4]`.
fn label(descriptor: &Descriptor) -> String {
    match descriptor.kind() {
        TypeKind::Enum { name, repr, .. } => format!("{name} (enum {})", repr.name()),
        TypeKind::Array { element, len } => format!("[{}; {len}]", label(element)),
        _ => descriptor.type_name(),
    }
}

fn field_label(field: &Field) -> String {
    format!("offset {} {}", field.offset, label(&field.ty))
}

fn layout_label(descriptor: &Descriptor) -> String {
    let extensible = match descriptor.kind() {
        TypeKind::Struct {
            extensible: true, ..
        } => ", extensible",
        _ => "",
    };
    format!(
        "{} (size {}, align {}{extensible})",
        label(descriptor),
        descriptor.size(),
        descriptor.align()
    )
}

fn mismatch(path: String, here: Option<String>, in_segment: Option<String>) -> Mismatch {
    Mismatch {
        path,
        here,
        in_segment,
    }
}

/// The first difference of two unequal descriptors at `path`.
fn difference(path: String, local: &Descriptor, stored: &Descriptor) -> Mismatch {
    if label(local) != label(stored) {
        return mismatch(path, Some(label(local)), Some(label(stored)));
    }
    let inner = match (local.kind(), stored.kind()) {
        (
            TypeKind::Struct {
                fields: local_fields,
                ..
            },
            TypeKind::Struct {
                fields: stored_fields,
                ..
            },
        ) => field_difference(&path, local_fields, stored_fields),
        (
            TypeKind::Array {
                element: local_element,
                ..
            },
            TypeKind::Array {
                element: stored_element,
                ..
            },
        ) if local_element != stored_element => Some(difference(
            format!("{path}[]"),
            local_element,
            stored_element,
        )),
        (
            TypeKind::Enum {
                variants: local_variants,
                ..
            },
            TypeKind::Enum {
                variants: stored_variants,
                ..
            },
        ) => variant_difference(&path, local_variants, stored_variants),
        _ => None,
    };
    // The same parts: what differs is the size, alignment or extensibility.
    inner.unwrap_or_else(|| mismatch(path, Some(layout_label(local)), Some(layout_label(stored))))
}

fn field_difference(path: &str, local: &[Field], stored: &[Field]) -> Option<Mismatch> {
    for (index, field) in local.iter().enumerate() {
        let path = join(path, &field.name);
        let Some((stored_index, other)) = stored
            .iter()
            .enumerate()
            .find(|(_, other)| other.name == field.name)
        else {
            return Some(mismatch(path, Some(field_label(field)), None));
        };
        if field.offset != other.offset || label(&field.ty) != label(&other.ty) {
            return Some(mismatch(
                path,
                Some(field_label(field)),
                Some(field_label(other)),
            ));
        }
        if field.ty != other.ty {
            return Some(difference(path, &field.ty, &other.ty));
        }
        if index != stored_index {
            // Only zero-sized fields can share an offset in another order.
            return Some(mismatch(
                path,
                Some(format!("field #{index}, {}", field_label(field))),
                Some(format!("field #{stored_index}, {}", field_label(other))),
            ));
        }
    }
    stored
        .iter()
        .find(|other| !local.iter().any(|field| field.name == other.name))
        .map(|other| mismatch(join(path, &other.name), None, Some(field_label(other))))
}

fn variant_label(variant: &Variant) -> String {
    format!("variant {} = {}", variant.name, variant.value)
}

fn variant_difference(path: &str, local: &[Variant], stored: &[Variant]) -> Option<Mismatch> {
    for (index, variant) in local.iter().enumerate() {
        let Some((stored_index, other)) = stored
            .iter()
            .enumerate()
            .find(|(_, other)| other.name == variant.name)
        else {
            return Some(mismatch(
                path.to_owned(),
                Some(variant_label(variant)),
                None,
            ));
        };
        if variant.value != other.value {
            return Some(mismatch(
                path.to_owned(),
                Some(variant_label(variant)),
                Some(variant_label(other)),
            ));
        }
        if index != stored_index {
            return Some(mismatch(
                path.to_owned(),
                Some(format!("{} (#{index})", variant_label(variant))),
                Some(format!("{} (#{stored_index})", variant_label(other))),
            ));
        }
    }
    stored
        .iter()
        .find(|other| !local.iter().any(|variant| variant.name == other.name))
        .map(|other| mismatch(path.to_owned(), None, Some(variant_label(other))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Primitive;

    fn primitive(primitive: Primitive) -> Descriptor {
        Descriptor::primitive(primitive)
    }

    fn point(x: Primitive) -> Descriptor {
        Descriptor::structure(
            "Point",
            8,
            4,
            vec![
                Field::new("x", 0, primitive(x)),
                Field::new("y", 4, primitive(Primitive::F32)),
            ],
            false,
        )
        .unwrap()
    }

    fn body(x: Primitive, extra: bool, extensible: bool) -> Descriptor {
        let mut fields = vec![
            Field::new("pos", 0, point(x)),
            Field::new("id", 8, primitive(Primitive::U32)),
        ];
        if extra {
            fields.push(Field::new("mass", 12, primitive(Primitive::F32)));
        }
        let size = if extra { 16 } else { 12 };
        Descriptor::structure("Body", size, 4, fields, extensible).unwrap()
    }

    #[test]
    fn nested_differences_name_the_path() {
        let here = body(Primitive::U32, false, false);
        let there = body(Primitive::F32, false, false);
        let mismatch = compare(&here, &there).unwrap_err();
        assert_eq!(
            mismatch.to_string(),
            "field pos.x: offset 0 u32 here, offset 0 f32 in segment"
        );
    }

    #[test]
    fn array_elements_are_compared_through_brackets() {
        let here = Descriptor::array(point(Primitive::U32), 3).unwrap();
        let there = Descriptor::array(point(Primitive::F32), 3).unwrap();
        assert_eq!(
            compare(&here, &there).unwrap_err().to_string(),
            "field [].x: offset 0 u32 here, offset 0 f32 in segment"
        );
    }

    #[test]
    fn a_prefix_of_an_extensible_writer_is_allowed() {
        let reader = body(Primitive::F32, false, true);
        let writer = body(Primitive::F32, true, true);
        assert_eq!(compare(&reader, &writer), Ok(Compat::Prefix));
        // Not the other way round: the reader would need a field the writer lacks.
        assert_eq!(
            compare(&writer, &reader).unwrap_err().to_string(),
            "field mass: offset 12 f32 here, missing in segment"
        );
    }

    #[test]
    fn a_prefix_of_a_fixed_writer_is_refused() {
        let reader = body(Primitive::F32, false, false);
        let writer = body(Primitive::F32, true, false);
        assert_eq!(
            compare(&reader, &writer).unwrap_err().to_string(),
            "field mass: missing here, offset 12 f32 in segment"
        );
    }

    #[test]
    fn extensibility_alone_is_named() {
        let reader = body(Primitive::F32, false, false);
        let writer = body(Primitive::F32, false, true);
        assert_eq!(
            compare(&reader, &writer).unwrap_err().to_string(),
            "type: Body (size 12, align 4) here, Body (size 12, align 4, extensible) in segment"
        );
    }

    #[test]
    fn enum_value_changes_name_the_variant() {
        let side = |sell| {
            Descriptor::enumeration(
                "Side",
                Primitive::U8,
                vec![Variant::new("Buy", 1), Variant::new("Sell", sell)],
            )
            .unwrap()
        };
        assert_eq!(
            compare(&side(2), &side(3)).unwrap_err().to_string(),
            "type: variant Sell = 2 here, variant Sell = 3 in segment"
        );
    }

    #[test]
    fn alignment_differences_are_shown() {
        let here = Descriptor::primitive_aligned(Primitive::U128, 16).unwrap();
        let there = Descriptor::primitive_aligned(Primitive::U128, 8).unwrap();
        assert_eq!(
            compare(&here, &there).unwrap_err().to_string(),
            "type: u128 (size 16, align 16) here, u128 (size 16, align 8) in segment"
        );
    }
}
