//! [`render_value`]: a value's bytes shown field by field, driven by a
//! descriptor alone (what `shm inspect` does with a segment's stored schema).

use std::fmt::Write as _;

use super::descriptor::{Descriptor, TypeKind};
use super::layout::Primitive;
use super::render::rust_name;

/// At most this many elements of one array are shown; the rest are counted.
const ARRAY_ELEMENTS: u64 = 16;
/// At most this many nodes visited in all (every value, array and struct,
/// empty ones included): nested arrays multiply, and a hostile schema of
/// empty arrays 16 deep would otherwise be 16^15 visits of nothing.
const VALUES: usize = 4096;

/// `bytes` (native byte order) as a value of `descriptor`, one field per line,
/// nested structs indented, enums by variant name, arrays cut after 16
/// elements and the whole after 4096 nodes (both marked `...`), so the text
/// and the time are bounded whatever the descriptor. Bytes
/// that `bytes` lacks show as `<missing>`; an enum value that names no
/// variant shows as `<no variant: N>`. Never panics and never reads outside
/// `bytes`, whatever the descriptor claims.
///
/// ```
/// use shm_typed::schema::{render_value, ShmType};
///
/// #[derive(Clone, Copy, ShmType, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Tick { price: f64, qty: u32, levels: [u16; 2] }
///
/// let tick = Tick { price: 101.5, qty: 3, levels: [7, 9] };
/// assert_eq!(
///     render_value(&Tick::descriptor(), bytemuck::bytes_of(&tick)),
///     "Tick {\n    price: 101.5,\n    qty: 3,\n    levels: [7, 9],\n}"
/// );
/// ```
pub fn render_value(descriptor: &Descriptor, bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut budget = VALUES;
    value(descriptor, bytes, 0, 0, &mut budget, &mut out);
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("    ");
    }
}

/// The bytes of `descriptor` at `offset`, if all are there.
fn slice(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

fn primitive_text(primitive: Primitive, raw: &[u8]) -> String {
    fn array<const N: usize>(raw: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&raw[..N]);
        out
    }
    match primitive {
        Primitive::U8 => raw[0].to_string(),
        Primitive::I8 => (raw[0] as i8).to_string(),
        Primitive::U16 => u16::from_ne_bytes(array(raw)).to_string(),
        Primitive::I16 => i16::from_ne_bytes(array(raw)).to_string(),
        Primitive::U32 => u32::from_ne_bytes(array(raw)).to_string(),
        Primitive::I32 => i32::from_ne_bytes(array(raw)).to_string(),
        Primitive::U64 => u64::from_ne_bytes(array(raw)).to_string(),
        Primitive::I64 => i64::from_ne_bytes(array(raw)).to_string(),
        Primitive::U128 => u128::from_ne_bytes(array(raw)).to_string(),
        Primitive::I128 => i128::from_ne_bytes(array(raw)).to_string(),
        Primitive::F32 => format!("{:?}", f32::from_ne_bytes(array(raw))),
        Primitive::F64 => format!("{:?}", f64::from_ne_bytes(array(raw))),
    }
}

/// Writes the value of `descriptor` at `offset` in `bytes`.
fn value(
    descriptor: &Descriptor,
    bytes: &[u8],
    offset: u64,
    level: usize,
    budget: &mut usize,
    out: &mut String,
) {
    if *budget == 0 {
        out.push_str("...");
        return;
    }
    *budget -= 1;
    match descriptor.kind() {
        TypeKind::Primitive(primitive) => match slice(bytes, offset, primitive.size()) {
            Some(raw) => out.push_str(&primitive_text(*primitive, raw)),
            None => out.push_str("<missing>"),
        },
        TypeKind::Enum { repr, variants, .. } => {
            let Some(raw) = slice(bytes, offset, repr.size()) else {
                out.push_str("<missing>");
                return;
            };
            // Zero-extended to 64 bits, as variant values are stored.
            let mut wide = [0u8; 8];
            let width = raw.len().min(8);
            if cfg!(target_endian = "little") {
                wide[..width].copy_from_slice(&raw[..width]);
            } else {
                wide[8 - width..].copy_from_slice(&raw[..width]);
            }
            let stored = u64::from_ne_bytes(wide);
            let shown = primitive_text(*repr, raw);
            match variants.iter().find(|variant| variant.value == stored) {
                Some(variant) => {
                    let _ = write!(out, "{} ({shown})", rust_name(&variant.name));
                }
                None => {
                    let _ = write!(out, "<no variant: {shown}>");
                }
            }
        }
        TypeKind::Array { element, len } => {
            let leaf = matches!(
                element.kind(),
                TypeKind::Primitive(_) | TypeKind::Enum { .. }
            );
            out.push('[');
            let shown = (*len).min(ARRAY_ELEMENTS);
            let mut cut = false;
            for index in 0..shown {
                if index > 0 {
                    out.push_str(if leaf { ", " } else { "," });
                }
                if !leaf {
                    out.push('\n');
                    indent(out, level + 1);
                }
                // Cannot overflow: the descriptor's size is element size * len.
                let at = offset.saturating_add(index.saturating_mul(element.size()));
                value(element, bytes, at, level + 1, budget, out);
                if *budget == 0 && index + 1 < *len {
                    out.push_str(", ...");
                    cut = true;
                    break;
                }
            }
            if *len > shown && !cut {
                let _ = write!(out, ", ... ({} more)", len - shown);
            }
            if !leaf && *len > 0 {
                out.push_str(",\n");
                indent(out, level);
            }
            out.push(']');
        }
        TypeKind::Struct { name, fields, .. } => {
            let _ = write!(out, "{} {{", rust_name(name));
            for (index, field) in fields.iter().enumerate() {
                out.push('\n');
                indent(out, level + 1);
                let _ = write!(out, "{}: ", rust_name(&field.name));
                value(
                    &field.ty,
                    bytes,
                    offset.saturating_add(field.offset),
                    level + 1,
                    budget,
                    out,
                );
                out.push(',');
                if *budget == 0 && index + 1 < fields.len() {
                    out.push('\n');
                    indent(out, level + 1);
                    out.push_str("...");
                    break;
                }
            }
            if !fields.is_empty() {
                out.push('\n');
                indent(out, level);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Field, Variant};

    fn side() -> Descriptor {
        Descriptor::enumeration(
            "Side",
            Primitive::I8,
            vec![Variant::new("Buy", 1), Variant::new("Sell", 0xff)],
        )
        .unwrap()
    }

    #[test]
    fn enums_nested_structs_and_arrays_of_structs() {
        let leg = Descriptor::structure(
            "Leg",
            2,
            1,
            vec![
                Field::new("side", 0, side()),
                Field::new("qty", 1, Descriptor::primitive(Primitive::U8)),
            ],
            false,
        )
        .unwrap();
        let order = Descriptor::structure(
            "Order",
            4,
            1,
            vec![Field::new("legs", 0, Descriptor::array(leg, 2).unwrap())],
            false,
        )
        .unwrap();
        assert_eq!(
            render_value(&order, &[1, 5, 0xff, 6]),
            "Order {\n    legs: [\n        Leg {\n            side: Buy (1),\n            qty: 5,\n        },\n        Leg {\n            side: Sell (-1),\n            qty: 6,\n        },\n    ],\n}"
        );
        assert!(render_value(&order, &[7, 5]).contains("side: <no variant: 7>"));
        assert!(render_value(&order, &[1, 5]).contains("side: <missing>"));
    }

    #[test]
    fn long_arrays_and_huge_values_are_cut() {
        let long = Descriptor::array(Descriptor::primitive(Primitive::U8), 100).unwrap();
        let text = render_value(&long, &[0; 100]);
        assert!(text.ends_with("0, ... (84 more)]"), "{text}");
        // 16^4 values: cut by the global budget, not printed in full.
        let mut huge = Descriptor::primitive(Primitive::U8);
        for _ in 0..4 {
            huge = Descriptor::array(huge, 16).unwrap();
        }
        let text = render_value(&huge, &[]);
        let values = text.matches("<missing>").count();
        assert!(values > VALUES / 2 && values < VALUES, "{values}");
        assert!(text.contains("..."));
    }

    #[test]
    fn empty_arrays_nested_deep_are_bounded_too() {
        let mut hostile = Descriptor::array(Descriptor::primitive(Primitive::U8), 0).unwrap();
        for _ in 1..crate::schema::MAX_DEPTH - 1 {
            hostile = Descriptor::array(hostile, 16).unwrap();
        }
        let text = render_value(&hostile, &[]);
        // 4096 nodes, each at most a line of indentation and brackets.
        assert!(text.len() < 400_000, "{} bytes", text.len());
        assert!(text.contains("..."));
    }

    #[test]
    fn floats_and_wide_integers() {
        let pair = Descriptor::structure(
            "Pair",
            32,
            16,
            vec![
                Field::new("x", 0, Descriptor::primitive(Primitive::F32)),
                Field::new("big", 16, Descriptor::primitive(Primitive::I128)),
            ],
            false,
        )
        .unwrap();
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&f32::NAN.to_ne_bytes());
        bytes[16..].copy_from_slice(&(-5i128).to_ne_bytes());
        assert_eq!(
            render_value(&pair, &bytes),
            "Pair {\n    x: NaN,\n    big: -5,\n}"
        );
    }
}
