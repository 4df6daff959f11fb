//! `#[derive(ShmType)]` against the compiler's own layout: offsets, sizes,
//! fingerprints that change with every structural change and only then, and
//! a pinned golden fingerprint.

use std::mem::{align_of, offset_of, size_of};

use shm_typed::schema::{
    compare, decode, encode, render_rust, Compat, Descriptor, Primitive, ShmType, TypeKind,
};

#[derive(Clone, Copy, ShmType)]
#[repr(u8)]
enum Side {
    Buy = 1,
    Sell,
}

#[derive(Clone, Copy, ShmType)]
#[repr(C)]
struct Point {
    x: f32,
    y: f32,
}

#[derive(Clone, Copy, ShmType)]
#[repr(C)]
struct Body {
    pos: Point,
    path: [Point; 3],
    id: u64,
    side: Side,
    _pad: [u8; 7],
}

#[derive(Clone, Copy, ShmType)]
#[repr(C)]
struct Pair(u32, i32);

#[derive(Clone, Copy, ShmType)]
#[repr(C, align(16))]
struct Wide {
    a: u64,
    b: u64,
}

#[derive(Clone, Copy, ShmType)]
#[repr(C)]
struct Empty;

#[derive(Clone, Copy, ShmType)]
#[repr(i16)]
enum Level {
    Low = -3,
    Mid,
    High = 0x7fff,
}

fn fields(descriptor: &Descriptor) -> Vec<(String, u64, u64)> {
    match descriptor.kind() {
        TypeKind::Struct { fields, .. } => fields
            .iter()
            .map(|field| (field.name.clone(), field.offset, field.ty.size()))
            .collect(),
        other => panic!("not a struct: {other:?}"),
    }
}

#[test]
fn derived_offsets_and_sizes_are_the_compilers() {
    let body = Body::descriptor();
    assert_eq!(body.size(), size_of::<Body>() as u64);
    assert_eq!(body.align(), align_of::<Body>() as u64);
    assert_eq!(body.name(), Some("Body"));
    assert_eq!(
        fields(&body),
        [
            (
                "pos".into(),
                offset_of!(Body, pos) as u64,
                size_of::<Point>() as u64
            ),
            (
                "path".into(),
                offset_of!(Body, path) as u64,
                size_of::<[Point; 3]>() as u64
            ),
            ("id".into(), offset_of!(Body, id) as u64, 8),
            ("side".into(), offset_of!(Body, side) as u64, 1),
            ("_pad".into(), offset_of!(Body, _pad) as u64, 7),
        ]
    );
    let TypeKind::Struct { fields: parts, .. } = body.kind() else {
        unreachable!()
    };
    assert_eq!(parts[0].ty, Point::descriptor());
    let TypeKind::Array { element, len } = parts[1].ty.kind() else {
        panic!("path is an array")
    };
    assert_eq!((&**element, *len), (&Point::descriptor(), 3));

    let pair = Pair::descriptor();
    assert_eq!(
        fields(&pair),
        [
            ("0".into(), offset_of!(Pair, 0) as u64, 4),
            ("1".into(), offset_of!(Pair, 1) as u64, 4)
        ]
    );
    let wide = Wide::descriptor();
    assert_eq!((wide.size(), wide.align()), (16, 16));
    assert_eq!(
        (Empty::descriptor().size(), Empty::descriptor().align()),
        (0, 1)
    );
}

#[test]
fn enum_values_are_recorded_explicit_and_implicit() {
    let TypeKind::Enum { repr, variants, .. } = Side::descriptor().kind().clone() else {
        panic!("Side is an enum")
    };
    assert_eq!(repr, Primitive::U8);
    let values: Vec<_> = variants
        .iter()
        .map(|v| (v.name.as_str(), v.value))
        .collect();
    assert_eq!(values, [("Buy", 1), ("Sell", 2)]);

    let level = Level::descriptor();
    assert_eq!((level.size(), level.align()), (2, 2));
    let TypeKind::Enum { variants, .. } = level.kind() else {
        panic!("Level is an enum")
    };
    let signed: Vec<_> = variants.iter().map(|v| v.signed_value(2)).collect();
    assert_eq!(signed, [-3, -2, 0x7fff]);
    assert_eq!(
        variants[0].value, 0xfffd,
        "the bit pattern in the repr's width"
    );
}

#[test]
fn the_fingerprint_is_a_constant_equal_to_the_descriptors() {
    const BODY: u64 = <Body as ShmType>::LAYOUT.fingerprint();
    assert_eq!(BODY, Body::fingerprint());
    for (constant, descriptor) in [
        (Body::fingerprint(), Body::descriptor()),
        (Side::fingerprint(), Side::descriptor()),
        (Level::fingerprint(), Level::descriptor()),
        (Pair::fingerprint(), Pair::descriptor()),
        (Wide::fingerprint(), Wide::descriptor()),
        (Empty::fingerprint(), Empty::descriptor()),
    ] {
        assert_eq!(constant, descriptor.fingerprint());
        assert_eq!(decode(&encode(&descriptor)).as_ref(), Ok(&descriptor));
    }
}

/// Two definitions of each struct, as two programs would write them.
mod v1 {
    use shm_typed::ShmType;

    #[derive(Clone, Copy, ShmType)]
    #[repr(C)]
    pub struct S {
        pub a: u32,
        pub b: u32,
    }

    #[derive(Clone, Copy, ShmType)]
    #[repr(u8)]
    pub enum E {
        X = 1,
        Y = 2,
    }

    #[derive(Clone, Copy, ShmType)]
    #[repr(C)]
    #[shm(extensible)]
    pub struct Growing {
        pub a: u32,
        pub b: u32,
    }
}

mod identical {
    pub mod deeper {
        #[derive(Clone, Copy, shm_typed::ShmType)]
        #[repr(C)]
        pub struct S {
            pub a: u32,
            pub b: u32,
        }
    }
}

mod swapped {
    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(C)]
    pub struct S {
        pub b: u32,
        pub a: u32,
    }
}

mod renamed {
    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(C)]
    pub struct S {
        pub a: u32,
        pub c: u32,
    }
}

mod float {
    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(C)]
    pub struct S {
        pub a: u32,
        pub b: f32,
    }
}

mod reshaped {
    /// The same size, the fields regrouped.
    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(C)]
    pub struct S {
        pub a: [u16; 2],
        pub b: u32,
    }
}

mod other_name {
    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(C)]
    #[shm(name = "T")]
    pub struct S {
        pub a: u32,
        pub b: u32,
    }
}

mod revalued {
    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(u8)]
    pub enum E {
        X = 1,
        Y = 3,
    }
}

mod v2 {
    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(C)]
    #[shm(extensible)]
    pub struct Growing {
        pub a: u32,
        pub b: u32,
        pub c: u64,
    }
}

#[test]
fn identical_definitions_in_different_modules_agree() {
    assert_eq!(v1::S::fingerprint(), identical::deeper::S::fingerprint());
    assert_eq!(
        compare(&identical::deeper::S::descriptor(), &v1::S::descriptor()),
        Ok(Compat::Identical)
    );
}

#[test]
fn every_structural_change_changes_the_fingerprint() {
    let base = v1::S::fingerprint();
    for (what, changed) in [
        ("swapped fields", swapped::S::fingerprint()),
        ("renamed field", renamed::S::fingerprint()),
        ("u32 to f32", float::S::fingerprint()),
        ("regrouped at the same size", reshaped::S::fingerprint()),
        ("renamed type", other_name::S::fingerprint()),
    ] {
        assert_ne!(base, changed, "{what}");
    }
    assert_ne!(
        v1::E::fingerprint(),
        revalued::E::fingerprint(),
        "variant value"
    );
}

#[test]
fn mismatches_name_the_first_differing_field() {
    let stored = v1::S::descriptor();
    let message = |local: Descriptor| compare(&local, &stored).unwrap_err().to_string();
    assert_eq!(
        message(swapped::S::descriptor()),
        "field b: offset 0 u32 here, offset 4 u32 in segment"
    );
    assert_eq!(
        message(renamed::S::descriptor()),
        "field c: offset 4 u32 here, missing in segment"
    );
    assert_eq!(
        message(float::S::descriptor()),
        "field b: offset 4 f32 here, offset 4 u32 in segment"
    );
    assert_eq!(
        message(reshaped::S::descriptor()),
        "field a: offset 0 [u16; 2] here, offset 0 u32 in segment"
    );
    assert_eq!(
        message(other_name::S::descriptor()),
        "type: T here, S in segment"
    );
    assert_eq!(
        compare(&revalued::E::descriptor(), &v1::E::descriptor())
            .unwrap_err()
            .to_string(),
        "type: variant Y = 3 here, variant Y = 2 in segment"
    );
}

#[test]
fn an_older_extensible_reader_reads_a_newer_writers_prefix() {
    let (old, new) = (v1::Growing::descriptor(), v2::Growing::descriptor());
    assert_eq!(compare(&old, &new), Ok(Compat::Prefix));
    assert_eq!(
        compare(&new, &old).unwrap_err().to_string(),
        "field c: offset 8 u64 here, missing in segment"
    );
    assert_ne!(v1::Growing::fingerprint(), v2::Growing::fingerprint());
    assert!(render_rust(&new).starts_with("#[shm(extensible)]\n#[repr(C)]\nstruct Growing {"));
}

/// Pinned: if this changes, the encoding or the hash changed, and every
/// segment written before would be refused. Bump `SCHEMA_VERSION` instead.
#[test]
fn golden_fingerprint_of_a_fixed_struct() {
    let body = Body::descriptor();
    let hex: String = encode(&body).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "012104426f64793003000503706f73002105506f696e74080200020178000b020179040b020470617468\
         0820032105506f696e74080200020178000b020179040b0202696420040304736964652822045369646501\
         000203427579010453656c6c02045f7061642920070100"
    );
    // FNV-1a 64 of those bytes, checked independently (Python) when pinned.
    assert_eq!(Body::fingerprint(), 0x8536_dded_c9fb_b87a);
}

/// The example in docs/FORMAT.md, section "Schema block".
#[test]
fn the_documented_example_is_what_encode_writes() {
    assert_eq!(
        encode(&Point::descriptor()),
        [
            0x01, 0x21, 0x05, b'P', b'o', b'i', b'n', b't', 0x08, 0x02, 0x00, 0x02, 0x01, b'x',
            0x00, 0x0b, 0x02, 0x01, b'y', 0x04, 0x0b, 0x02,
        ]
    );
}

/// `#[shm(as = Side)]` on a `u8` field: the same descriptor as a field of
/// the enum itself, so a `Pod` struct carries its enums in the schema.
#[test]
fn fields_described_as_enums_match_enum_fields() {
    #[derive(Clone, Copy, ShmType)]
    #[repr(C)]
    #[shm(name = "Order")]
    struct WithEnums {
        qty: u32,
        side: Side,
        legs: [Side; 3],
    }

    #[derive(Clone, Copy, ShmType, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    #[shm(name = "Order")]
    struct WithIntegers {
        qty: u32,
        #[shm(as = Side)]
        side: u8,
        #[shm(as = [Side; 3])]
        legs: [u8; 3],
    }

    assert_eq!(WithIntegers::descriptor(), WithEnums::descriptor());
    assert_eq!(WithIntegers::fingerprint(), WithEnums::fingerprint());
    // The plain integer version differs, at the field described.
    #[derive(Clone, Copy, ShmType)]
    #[repr(C)]
    #[shm(name = "Order")]
    struct Plain {
        qty: u32,
        side: u8,
        legs: [u8; 3],
    }
    let mismatch = compare(&Plain::descriptor(), &WithIntegers::descriptor()).unwrap_err();
    assert!(
        mismatch.to_string().starts_with("field side:"),
        "{mismatch}"
    );
}
