//! Property tests of the schema encoding: random descriptors (nested structs,
//! arrays, enums, padding, other targets' alignments) round-trip through
//! [`encode`]/[`decode`], and any byte string given to the decoder is an
//! error or a descriptor that encodes back to exactly those bytes, never a
//! panic. The decoder's bounds (depth, block size) are checked by the unit
//! tests in `schema/encoding.rs`; here the strategies go past them on purpose.

use proptest::prelude::*;
use shm_typed::schema::{
    compare, decode, encode, Compat, Descriptor, Field, Primitive, SchemaError, Variant, MAX_DEPTH,
    MAX_SCHEMA_LEN,
};

fn primitive() -> impl Strategy<Value = Primitive> {
    proptest::sample::select(Primitive::ALL.to_vec())
}

fn name() -> impl Strategy<Value = String> {
    // Short ASCII and some non-ASCII: names are UTF-8 in the encoding.
    "[a-zA-Z_][a-zA-Z0-9_]{0,10}|[é∂ø]{1,3}"
}

fn leaf() -> impl Strategy<Value = Descriptor> {
    prop_oneof![
        primitive().prop_map(Descriptor::primitive),
        // A primitive aligned as on another target (u64 at 4 on i386).
        (primitive(), 0u32..5).prop_filter_map("alignment above the size", |(p, log2)| {
            Descriptor::primitive_aligned(p, 1 << log2).ok()
        }),
        (
            name(),
            proptest::sample::select(vec![
                Primitive::U8,
                Primitive::U16,
                Primitive::U32,
                Primitive::U64,
                Primitive::I8,
                Primitive::I32,
                Primitive::I64
            ]),
            proptest::collection::vec(any::<u64>(), 1..6),
        )
            .prop_filter_map(
                "enum values that do not fit or repeat",
                |(name, repr, values)| {
                    let variants = values
                        .iter()
                        .enumerate()
                        .map(|(i, value)| Variant::new(format!("V{i}"), value % 300))
                        .collect();
                    Descriptor::enumeration(name, repr, variants).ok()
                }
            ),
    ]
}

/// A struct of `members` laid out in order, each at the next offset its
/// alignment allows plus `gaps[i]` alignment units of explicit padding.
fn structure(name: String, members: Vec<(Descriptor, u8)>, extensible: bool) -> Option<Descriptor> {
    let mut offset = 0u64;
    let mut align = 1u64;
    let mut fields = Vec::with_capacity(members.len());
    for (i, (ty, gap)) in members.into_iter().enumerate() {
        let a = ty.align();
        align = align.max(a);
        offset = offset.checked_next_multiple_of(a)?;
        offset = offset.checked_add(a.checked_mul(u64::from(gap % 3))?)?;
        let size = ty.size();
        fields.push(Field::new(format!("f{i}"), offset, ty));
        offset = offset.checked_add(size)?;
    }
    let size = offset.checked_next_multiple_of(align)?;
    Descriptor::structure(name, size, align, fields, extensible).ok()
}

fn descriptor() -> impl Strategy<Value = Descriptor> {
    // Depth up to 20 levels and about 200 nodes: past MAX_DEPTH (16) at times,
    // which the constructors refuse and the filter drops.
    leaf().prop_recursive(20, 200, 6, |inner| {
        prop_oneof![
            (inner.clone(), 0u64..5).prop_filter_map("array too large", |(element, len)| {
                Descriptor::array(element, len).ok()
            }),
            (
                name(),
                proptest::collection::vec((inner, any::<u8>()), 0..6),
                any::<bool>()
            )
                .prop_filter_map("struct refused", |(name, members, extensible)| {
                    structure(name, members, extensible)
                }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
    ))]

    /// Encode, decode: the same descriptor, the same fingerprint, the
    /// declared encoded length, and the comparison finds them identical.
    #[test]
    fn random_descriptors_round_trip(d in descriptor()) {
        prop_assert!(d.depth() <= MAX_DEPTH);
        let bytes = encode(&d);
        prop_assert_eq!(bytes.len(), d.encoded_len());
        prop_assert!(bytes.len() <= MAX_SCHEMA_LEN);
        let back = decode(&bytes).expect("a valid descriptor decodes");
        prop_assert_eq!(back.fingerprint(), d.fingerprint());
        prop_assert_eq!(compare(&d, &back), Ok(Compat::Identical));
        prop_assert_eq!(&back, &d);
    }

    /// Any bytes: an error, or a descriptor whose encoding is those bytes
    /// (the encoding is canonical, so nothing is silently reinterpreted).
    #[test]
    fn arbitrary_bytes_decode_to_an_error_or_their_own_encoding(
        bytes in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        if let Ok(d) = decode(&bytes) {
            prop_assert_eq!(encode(&d), bytes);
        }
    }

    /// A valid block with one byte changed, cut short or extended: an error,
    /// or another valid descriptor that re-encodes to the changed bytes.
    /// These reach far deeper into the decoder than uniform random bytes.
    #[test]
    fn damaged_blocks_decode_to_an_error_or_their_own_encoding(
        d in descriptor(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in any::<prop::sample::Index>(),
        damage in 0..3u8,
    ) {
        let mut bytes = encode(&d);
        match damage {
            0 => { let i = at.index(bytes.len()); bytes[i] = value; }
            1 => bytes.truncate(cut.index(bytes.len())),
            _ => bytes.push(value),
        }
        if let Ok(other) = decode(&bytes) {
            prop_assert_eq!(encode(&other), bytes);
        }
    }
}

/// A block nesting arrays far past the bound is refused by depth, whatever
/// its size: the decoder does not recurse without limit.
#[test]
fn hostile_nesting_is_refused() {
    let mut d = Descriptor::primitive(Primitive::U8);
    for _ in 1..MAX_DEPTH {
        d = Descriptor::array(d, 1).unwrap();
    }
    assert_eq!(
        Descriptor::array(d.clone(), 1),
        Err(SchemaError::TooDeep),
        "the constructor stops at the bound"
    );
    let bytes = encode(&d);
    assert_eq!(decode(&bytes).as_ref(), Ok(&d));
    // The block: a version byte, MAX_DEPTH - 1 array nodes of two bytes each
    // (the tag, the length 1), the u8 leaf (tag, alignment).
    assert_eq!(bytes.len(), 1 + 2 * (MAX_DEPTH - 1) + 2);
    let array_node = bytes[1..3].to_vec();
    for extra in [1, 1000, 20_000] {
        let mut deeper = bytes.clone();
        deeper.splice(1..1, array_node.iter().copied().cycle().take(2 * extra));
        let result = decode(&deeper);
        assert!(
            matches!(
                result,
                Err(SchemaError::TooDeep | SchemaError::TooLarge { .. })
            ),
            "{extra} more levels: {result:?}"
        );
    }
}

/// The strategy reaches what the properties claim to cover: nested structs
/// and arrays several levels deep, enums, and padding.
#[test]
fn the_strategy_covers_deep_and_padded_types() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use shm_typed::schema::TypeKind;

    fn visit(d: &Descriptor, seen: &mut [bool; 4]) {
        match d.kind() {
            TypeKind::Primitive(_) => {}
            TypeKind::Enum { .. } => seen[0] = true,
            TypeKind::Array { element, .. } => visit(element, seen),
            TypeKind::Struct { fields, .. } => {
                let mut end = 0;
                for field in fields {
                    seen[1] |= field.offset > end;
                    end = field.offset + field.ty.size();
                    visit(&field.ty, seen);
                }
                seen[2] |= matches!(d.kind(), TypeKind::Struct { fields, .. } if fields.iter().any(|f| matches!(f.ty.kind(), TypeKind::Struct { .. })));
            }
        }
        seen[3] |= d.depth() >= 5;
    }
    let mut runner = TestRunner::deterministic();
    let mut seen = [false; 4];
    for _ in 0..512 {
        let d = descriptor().new_tree(&mut runner).unwrap().current();
        visit(&d, &mut seen);
    }
    assert_eq!(
        seen, [true; 4],
        "[enum, padding, nested struct, depth >= 5]"
    );
}
