//! Renderers for `shm inspect`: a descriptor as a Rust-like declaration with
//! offsets ([`render_rust`]) and as a C header ([`render_c`]).
//!
//! Both emit nested structs and enums first, each once; two different types
//! of the same name get distinct names (`Point`, `Point_2`). Gaps between
//! fields (possible in a decoded block, never in a derived type) are shown
//! as padding. Names come from a possibly hostile segment: the C renderer
//! makes every name a C identifier, and both render control characters never
//! (descriptors cannot hold them).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::descriptor::{Descriptor, Field, TypeKind};
use super::layout::Primitive;

/// The structs and enums of a descriptor, dependencies first, each with the
/// name it is rendered under.
struct NamedTypes<'a> {
    order: Vec<&'a Descriptor>,
    names: HashMap<&'a Descriptor, String>,
    used: HashSet<String>,
    emitted: HashSet<&'a Descriptor>,
}

impl<'a> NamedTypes<'a> {
    fn collect(roots: &[&'a Descriptor], identifier: fn(&str) -> String) -> NamedTypes<'a> {
        NamedTypes::collect_avoiding(roots, identifier, HashSet::new())
    }

    /// As `collect`, naming no type with a name in `used`.
    fn collect_avoiding(
        roots: &[&'a Descriptor],
        identifier: fn(&str) -> String,
        used: HashSet<String>,
    ) -> NamedTypes<'a> {
        let mut named = NamedTypes {
            order: Vec::new(),
            names: HashMap::new(),
            used,
            emitted: HashSet::new(),
        };
        // The roots keep their own names: a nested type of the same name
        // (met first, as dependencies come first) is the one renamed.
        for root in roots {
            if let Some(name) = root.name() {
                if !named.names.contains_key(root) {
                    let name = unique(&mut named.used, identifier(name));
                    named.names.insert(root, name);
                }
            }
        }
        for root in roots {
            named.visit(root, identifier);
        }
        named
    }

    fn visit(&mut self, descriptor: &'a Descriptor, identifier: fn(&str) -> String) {
        match descriptor.kind() {
            TypeKind::Primitive(_) => return,
            TypeKind::Array { element, .. } => return self.visit(element, identifier),
            TypeKind::Struct { fields, .. } => {
                for field in fields {
                    self.visit(&field.ty, identifier);
                }
            }
            TypeKind::Enum { .. } => {}
        }
        if !self.emitted.insert(descriptor) {
            return;
        }
        if !self.names.contains_key(descriptor) {
            let base = identifier(descriptor.name().unwrap_or("T"));
            let name = unique(&mut self.used, base);
            self.names.insert(descriptor, name);
        }
        self.order.push(descriptor);
    }

    fn name(&self, descriptor: &Descriptor) -> &str {
        self.names.get(descriptor).map_or("?", String::as_str)
    }
}

/// `base`, or `base_2`, `base_3`, ... whichever is not yet in `used`.
fn unique(used: &mut HashSet<String>, base: String) -> String {
    let mut candidate = base.clone();
    let mut suffix = 2u64;
    while used.contains(&candidate) {
        candidate = format!("{base}_{suffix}");
        suffix += 1;
    }
    used.insert(candidate.clone());
    candidate
}

/// The largest alignment of the fields, at least 1: what the struct would
/// have without `align(N)`.
fn natural_align(fields: &[Field]) -> u64 {
    fields
        .iter()
        .map(|field| field.ty.align())
        .max()
        .unwrap_or(1)
}

/// Uncovered bytes: `(offset, length)`.
type Gap = (u64, u64);

/// Gaps before each field and at the end.
fn gaps(size: u64, fields: &[Field]) -> (Vec<Option<Gap>>, Option<Gap>) {
    let mut end = 0u64;
    let before = fields
        .iter()
        .map(|field| {
            let gap = (field.offset > end).then(|| (end, field.offset - end));
            end = field.offset.saturating_add(field.ty.size());
            gap
        })
        .collect();
    (before, (size > end).then(|| (end, size - end)))
}

fn enum_value(repr: Primitive, value: u64) -> String {
    if repr.is_signed() {
        super::Variant::new("v", value)
            .signed_value(repr.size())
            .to_string()
    } else {
        value.to_string()
    }
}

/// `name` as `render_rust` and `render_value` show it: as it is if it is
/// made of ASCII letters, digits, `_`, `.` and `:` only (every Rust
/// identifier and path, `feed.Tick`), else quoted and escaped as a Rust
/// string (`"a: u8, /* 1 */ b"`, `"\u{202e}x"`), so that a name from a
/// segment can neither pose as more fields nor reorder the terminal's text.
pub(crate) fn rust_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':'));
    if plain {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// A descriptor as Rust-like declarations with offsets in comments.
///
/// ```
/// use shm_typed::schema::{render_rust, ShmType};
///
/// #[derive(Clone, Copy, ShmType)]
/// #[repr(u8)]
/// enum Side { Buy = 1, Sell = 2 }
///
/// #[derive(Clone, Copy, ShmType)]
/// #[repr(C)]
/// struct Tick { price: f64, qty: u32, side: Side, pad: [u8; 3] }
///
/// assert_eq!(render_rust(&Tick::descriptor()), "\
/// #[repr(u8)]
/// enum Side { // size 1, align 1
///     Buy = 1,
///     Sell = 2,
/// }
///
/// #[repr(C)]
/// struct Tick { // size 16, align 8
///     /* 0 */ price: f64,
///     /* 8 */ qty: u32,
///     /* 12 */ side: Side, // enum u8
///     /* 13 */ pad: [u8; 3],
/// }
/// ");
/// ```
pub fn render_rust(descriptor: &Descriptor) -> String {
    fn type_expr(named: &NamedTypes<'_>, descriptor: &Descriptor) -> String {
        match descriptor.kind() {
            TypeKind::Primitive(primitive) => primitive.name().to_owned(),
            TypeKind::Array { element, len } => format!("[{}; {len}]", type_expr(named, element)),
            TypeKind::Struct { .. } | TypeKind::Enum { .. } => named.name(descriptor).to_owned(),
        }
    }
    let named = NamedTypes::collect(&[descriptor], rust_name);
    let mut out = String::new();
    for (index, ty) in named.order.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let name = named.name(ty);
        let (size, align) = (ty.size(), ty.align());
        match ty.kind() {
            TypeKind::Struct {
                fields, extensible, ..
            } => {
                if *extensible {
                    out.push_str("#[shm(extensible)]\n");
                }
                if align > natural_align(fields) {
                    let _ = writeln!(out, "#[repr(C, align({align}))]");
                } else {
                    out.push_str("#[repr(C)]\n");
                }
                let _ = writeln!(out, "struct {name} {{ // size {size}, align {align}");
                let (before, after) = gaps(size, fields);
                for (field, gap) in fields.iter().zip(before) {
                    if let Some((at, bytes)) = gap {
                        let _ = writeln!(out, "    /* {at} */ // {bytes} bytes of padding");
                    }
                    let note = match field.ty.kind() {
                        TypeKind::Enum { repr, .. } => format!(" // enum {}", repr.name()),
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        out,
                        "    /* {} */ {}: {},{note}",
                        field.offset,
                        rust_name(&field.name),
                        type_expr(&named, &field.ty)
                    );
                }
                if let Some((at, bytes)) = after {
                    let _ = writeln!(out, "    /* {at} */ // {bytes} bytes of padding");
                }
                out.push_str("}\n");
            }
            TypeKind::Enum { repr, variants, .. } => {
                let _ = writeln!(out, "#[repr({})]", repr.name());
                let _ = writeln!(out, "enum {name} {{ // size {size}, align {align}");
                for variant in variants {
                    let _ = writeln!(
                        out,
                        "    {} = {},",
                        rust_name(&variant.name),
                        enum_value(*repr, variant.value)
                    );
                }
                out.push_str("}\n");
            }
            TypeKind::Primitive(_) | TypeKind::Array { .. } => {}
        }
    }
    if descriptor.name().is_none() {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} // size {}, align {}",
            type_expr(&named, descriptor),
            descriptor.size(),
            descriptor.align()
        );
    }
    out
}

const C_RESERVED: &[&str] = &[
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    "_Alignas",
    "_Alignof",
    "_Atomic",
    "_Bool",
    "_Complex",
    "_Generic",
    "_Imaginary",
    "_Noreturn",
    "_Static_assert",
    "_Thread_local",
    "bool",
    "true",
    "false",
    "alignas",
    "alignof",
    "offsetof",
    "NULL",
];

/// Lower-case names a C compiler may define as macros (gcc in its default
/// `gnu*` modes), or that later C standards made keywords.
const C_PREDEFINED: &[&str] = &[
    "linux",
    "unix",
    "i386",
    "constexpr",
    "nullptr",
    "static_assert",
    "thread_local",
    "typeof",
    "typeof_unqual",
    "asm",
    "errno",
    "assert",
];

/// Upper-case macro names of `<stdint.h>` outside the `INT*`/`UINT*` pattern
/// that [`c_identifier`] checks.
const C_STDINT_MACROS: &[&str] = &[
    "SIZE_MAX",
    "PTRDIFF_MIN",
    "PTRDIFF_MAX",
    "SIG_ATOMIC_MIN",
    "SIG_ATOMIC_MAX",
    "WCHAR_MIN",
    "WCHAR_MAX",
    "WINT_MIN",
    "WINT_MAX",
];

/// `name` as a C identifier: other characters become `_`, and a leading
/// digit gets a `_` before it. Names the implementation reserves (`__x`,
/// `_X`) get `shm` before them. Reserved words, names a compiler or
/// `<stdint.h>` may define as macros (`linux`, `INT8_MAX`), names ending in
/// `_t` (POSIX reserves them) and names beginning with `SHM_` (the macros of
/// `shm inspect --c-header`) get a `_` after them.
pub(crate) fn c_identifier(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    let bytes = out.as_bytes();
    if bytes[0] == b'_' && bytes.len() > 1 && (bytes[1] == b'_' || bytes[1].is_ascii_uppercase()) {
        out.insert_str(0, "shm");
    }
    let stdint_macro = (out.starts_with("INT") || out.starts_with("UINT"))
        && (out.ends_with("_MAX") || out.ends_with("_MIN") || out.ends_with("_C"));
    if C_RESERVED.contains(&out.as_str())
        || C_PREDEFINED.contains(&out.as_str())
        || C_STDINT_MACROS.contains(&out.as_str())
        || stdint_macro
        || out.ends_with("_t")
        || out.starts_with("SHM_")
    {
        out.push('_');
    }
    out
}

fn c_primitive(primitive: Primitive) -> &'static str {
    match primitive {
        Primitive::U8 => "uint8_t",
        Primitive::U16 => "uint16_t",
        Primitive::U32 => "uint32_t",
        Primitive::U64 => "uint64_t",
        Primitive::U128 => "unsigned __int128",
        Primitive::I8 => "int8_t",
        Primitive::I16 => "int16_t",
        Primitive::I32 => "int32_t",
        Primitive::I64 => "int64_t",
        Primitive::I128 => "__int128",
        Primitive::F32 => "float",
        Primitive::F64 => "double",
    }
}

/// A C declaration of `declarator` with type `descriptor`: `uint32_t a[4][2]`.
fn c_declaration(named: &NamedTypes<'_>, descriptor: &Descriptor, declarator: &str) -> String {
    let mut dimensions = String::new();
    let mut base = descriptor;
    while let TypeKind::Array { element, len } = base.kind() {
        let _ = write!(dimensions, "[{len}]");
        base = element;
    }
    let base_name = match base.kind() {
        TypeKind::Primitive(primitive) => c_primitive(*primitive),
        _ => named.name(base),
    };
    format!("{base_name} {declarator}{dimensions}")
}

fn c_literal(repr: Primitive, value: u64) -> String {
    if !repr.is_signed() {
        return format!("{value}ULL");
    }
    match super::Variant::new("v", value).signed_value(repr.size()) {
        i64::MIN => "(-9223372036854775807LL - 1)".to_owned(),
        signed => format!("{signed}LL"),
    }
}

/// A descriptor as a C11 header: `stdint.h` types, nested types first, enums
/// as their integer type with a `#define` per variant, gaps as explicit
/// `uint8_t` padding arrays, a larger-than-natural alignment as `_Alignas`
/// on the first member. A root that is not a struct or enum becomes
/// `typedef ... shm_root;`. `u128`/`i128` use GCC's `__int128`.
///
/// ```
/// use shm_typed::schema::{render_c, ShmType};
///
/// #[derive(Clone, Copy, ShmType)]
/// #[repr(C)]
/// struct Tick { price: f64, qty: [u32; 2] }
///
/// let header = render_c(&Tick::descriptor());
/// assert!(header.contains("#include <stdint.h>"));
/// assert!(header.contains("typedef struct Tick {\n    double price; /* offset 0 */\n    uint32_t qty[2]; /* offset 8 */\n} Tick; /* size 16, align 8 */"));
/// ```
pub fn render_c(descriptor: &Descriptor) -> String {
    render_c_all(&[(descriptor, None)])
}

/// Several descriptors in one C header, as [`render_c`] renders one: every
/// struct and enum they contain once, dependencies first, two different
/// types of one name told apart (`Point`, `Point_2`). A root given a name
/// beside it also gets that name as a `typedef` (`typedef Tick shm_value;`),
/// made a C identifier and reserved before any type is named, so that a
/// type which would take it is renamed instead; an unnamed root that is not
/// a struct or enum becomes `shm_root`, `shm_root_2`, ...
///
/// ```
/// use shm_typed::format::{Header, LockRecord};
/// use shm_typed::schema::{render_c_all, ShmType};
///
/// let header = render_c_all(&[
///     (&Header::descriptor(), None),
///     (&LockRecord::descriptor(), None),
///     (&u64::descriptor(), Some("shm_value")),
/// ]);
/// assert!(header.contains("} shm_header; /* size 256, align 8 */"));
/// assert!(header.contains("} shm_lock; /* size 128, align 128 */"));
/// assert!(header.contains("typedef uint64_t shm_value; /* size 8, align 8 */"));
/// ```
pub fn render_c_all(roots: &[(&Descriptor, Option<&str>)]) -> String {
    let mut reserved = HashSet::new();
    let aliases: Vec<Option<String>> = roots
        .iter()
        .map(|(_, alias)| alias.map(|alias| unique(&mut reserved, c_identifier(alias))))
        .collect();
    let descriptors: Vec<&Descriptor> = roots.iter().map(|(descriptor, _)| *descriptor).collect();
    let mut named = NamedTypes::collect_avoiding(&descriptors, c_identifier, reserved);
    // Every member's name, as the structs below will name them: a variant's
    // `#define` must differ from all of them (a macro rewrites members too).
    let members_of: HashMap<&Descriptor, StructMembers> = named
        .order
        .iter()
        .filter_map(|ty| match ty.kind() {
            TypeKind::Struct { fields, .. } => Some((*ty, StructMembers::of(ty.size(), fields))),
            _ => None,
        })
        .collect();
    let all_members: HashSet<&str> = members_of.values().flat_map(StructMembers::names).collect();
    let mut out =
        String::from("/* Generated by shm-typed from a type's schema. */\n#include <stdint.h>\n");
    for ty in &named.order {
        let name = named.name(ty).to_owned();
        out.push('\n');
        match ty.kind() {
            TypeKind::Struct { fields, .. } => {
                let _ = writeln!(out, "typedef struct {name} {{");
                let members = &members_of[ty];
                let (before, after) = gaps(ty.size(), fields);
                let mut first = true;
                let align_prefix = |first: &mut bool| {
                    let raise = std::mem::take(first) && ty.align() > natural_align(fields);
                    if raise {
                        format!("_Alignas({}) ", ty.align())
                    } else {
                        String::new()
                    }
                };
                for (index, (field, gap)) in fields.iter().zip(before).enumerate() {
                    if let Some((at, bytes)) = gap {
                        let pad = members.pads_before[index].as_deref().unwrap_or("?");
                        let prefix = align_prefix(&mut first);
                        let _ =
                            writeln!(out, "    {prefix}uint8_t {pad}[{bytes}]; /* offset {at} */");
                    }
                    let member = &members.fields[index];
                    let prefix = align_prefix(&mut first);
                    let _ = writeln!(
                        out,
                        "    {prefix}{}; /* offset {} */",
                        c_declaration(&named, &field.ty, member),
                        field.offset
                    );
                }
                if let Some((at, bytes)) = after {
                    let pad = members.pad_after.as_deref().unwrap_or("?");
                    let prefix = align_prefix(&mut first);
                    let _ = writeln!(out, "    {prefix}uint8_t {pad}[{bytes}]; /* offset {at} */");
                }
                let _ = writeln!(
                    out,
                    "}} {name}; /* size {}, align {} */",
                    ty.size(),
                    ty.align()
                );
            }
            TypeKind::Enum { repr, variants, .. } => {
                let _ = writeln!(out, "typedef {} {name}; /* enum */", c_primitive(*repr));
                for variant in variants {
                    // Distinct from every type, alias, member and earlier
                    // define; reserved names are changed by c_identifier.
                    let define = unique_avoiding(
                        &mut named.used,
                        &all_members,
                        c_identifier(&format!("{name}_{}", variant.name)),
                    );
                    let _ = writeln!(
                        out,
                        "#define {define} (({name}){})",
                        c_literal(*repr, variant.value)
                    );
                }
            }
            TypeKind::Primitive(_) | TypeKind::Array { .. } => {}
        }
    }
    for (descriptor, alias) in descriptors.iter().zip(aliases) {
        let root = match alias {
            Some(alias) => alias,
            None if descriptor.name().is_none() => {
                unique_avoiding(&mut named.used, &all_members, "shm_root".to_owned())
            }
            None => continue,
        };
        let _ = writeln!(
            out,
            "\ntypedef {}; /* size {}, align {} */",
            c_declaration(&named, descriptor, &root),
            descriptor.size(),
            descriptor.align()
        );
    }
    out
}

/// The member names of one struct in the C header: its fields' and its
/// padding arrays', each distinct within the struct.
struct StructMembers {
    pads_before: Vec<Option<String>>,
    fields: Vec<String>,
    pad_after: Option<String>,
}

impl StructMembers {
    fn of(size: u64, fields: &[Field]) -> StructMembers {
        let mut used = HashSet::new();
        let (before, after) = gaps(size, fields);
        let mut pads_before = Vec::with_capacity(fields.len());
        let mut names = Vec::with_capacity(fields.len());
        for (field, gap) in fields.iter().zip(before) {
            pads_before.push(gap.map(|(at, _)| unique(&mut used, format!("_shm_pad_{at}"))));
            names.push(unique(&mut used, c_identifier(&field.name)));
        }
        let pad_after = after.map(|(at, _)| unique(&mut used, format!("_shm_pad_{at}")));
        StructMembers {
            pads_before,
            fields: names,
            pad_after,
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.pads_before
            .iter()
            .flatten()
            .chain(&self.fields)
            .chain(&self.pad_after)
            .map(String::as_str)
    }
}

/// [`unique`], also avoiding the names in `also`.
fn unique_avoiding(used: &mut HashSet<String>, also: &HashSet<&str>, base: String) -> String {
    let mut candidate = base.clone();
    let mut suffix = 2u64;
    while used.contains(&candidate) || also.contains(candidate.as_str()) {
        candidate = format!("{base}_{suffix}");
        suffix += 1;
    }
    used.insert(candidate.clone());
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Variant;

    #[test]
    fn c_identifiers_are_sanitised() {
        assert_eq!(c_identifier("0"), "_0");
        assert_eq!(c_identifier("int"), "int_");
        assert_eq!(c_identifier("uint32_t"), "uint32_t_");
        assert_eq!(c_identifier("a-b*/c"), "a_b__c");
        assert_eq!(c_identifier("ñ"), "_");
    }

    #[test]
    fn same_named_different_types_get_distinct_names() {
        let point = |ty| {
            Descriptor::structure(
                "Point",
                4,
                4,
                vec![Field::new("x", 0, Descriptor::primitive(ty))],
                false,
            )
            .unwrap()
        };
        let outer = Descriptor::structure(
            "Outer",
            8,
            4,
            vec![
                Field::new("a", 0, point(Primitive::U32)),
                Field::new("b", 4, point(Primitive::F32)),
            ],
            false,
        )
        .unwrap();
        let rust = render_rust(&outer);
        assert!(rust.contains("struct Point {"), "{rust}");
        assert!(rust.contains("struct Point_2 {"), "{rust}");
        assert!(rust.contains("/* 4 */ b: Point_2,"), "{rust}");
    }

    #[test]
    fn gaps_render_as_padding() {
        let gappy = Descriptor::structure(
            "Gappy",
            16,
            8,
            vec![
                Field::new("a", 0, Descriptor::primitive(Primitive::U8)),
                Field::new("b", 8, Descriptor::primitive(Primitive::U32)),
            ],
            false,
        )
        .unwrap();
        let rust = render_rust(&gappy);
        assert!(rust.contains("/* 1 */ // 7 bytes of padding"), "{rust}");
        assert!(rust.contains("/* 12 */ // 4 bytes of padding"), "{rust}");
        assert!(rust.contains("#[repr(C, align(8))]"), "{rust}");
        let c = render_c(&gappy);
        assert!(c.contains("uint8_t _shm_pad_1[7]; /* offset 1 */"), "{c}");
        assert!(c.contains("_Alignas(8) uint8_t a; /* offset 0 */"), "{c}");
    }

    #[test]
    fn signed_enum_values_render_signed() {
        let level = Descriptor::enumeration(
            "Level",
            Primitive::I64,
            vec![
                Variant::new("Low", i64::MIN as u64),
                Variant::new("High", 1),
            ],
        )
        .unwrap();
        assert!(render_rust(&level).contains("Low = -9223372036854775808,"));
        assert!(
            render_c(&level).contains("#define Level_Low ((Level)(-9223372036854775807LL - 1))")
        );
    }

    #[test]
    fn roots_without_names_render_as_their_type() {
        let array = Descriptor::array(Descriptor::primitive(Primitive::U16), 3).unwrap();
        assert_eq!(render_rust(&array), "[u16; 3] // size 6, align 2\n");
        assert!(
            render_c(&array).ends_with("\ntypedef uint16_t shm_root[3]; /* size 6, align 2 */\n")
        );
    }
}
