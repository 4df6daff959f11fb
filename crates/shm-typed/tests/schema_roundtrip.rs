//! Property tests of the schema block: random descriptors round-trip with
//! their fingerprint; the decoder, given any bytes or mutated encodings,
//! returns an error or a valid descriptor and never panics; the bounds hold.

use proptest::prelude::*;
use shm_typed::schema::{
    compare, decode, encode, Compat, Descriptor, Field, FieldLayout, Layout, LayoutKind, Primitive,
    SchemaError, TypeKind, Variant, VariantLayout, MAX_DEPTH, MAX_NAME_LEN, MAX_SCHEMA_LEN,
    SCHEMA_VERSION,
};

/// `PROPTEST_CASES` raises the count for a long run.
fn cases() -> u32 {
    let default = if cfg!(miri) { 8 } else { 256 };
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,11}"
}

fn primitive() -> impl Strategy<Value = Primitive> {
    proptest::sample::select(Primitive::ALL.to_vec())
}

fn enumeration() -> impl Strategy<Value = Descriptor> {
    let repr = proptest::sample::select(
        Primitive::ALL
            .iter()
            .copied()
            .filter(|p| p.is_enum_repr())
            .collect::<Vec<_>>(),
    );
    (
        name(),
        repr,
        proptest::collection::btree_set(any::<u64>(), 1..6),
    )
        .prop_map(|(name, repr, values)| {
            let mask = if repr.size() >= 8 {
                u64::MAX
            } else {
                (1 << (8 * repr.size())) - 1
            };
            let values: std::collections::BTreeSet<u64> =
                values.into_iter().map(|v| v & mask).collect();
            let variants = values
                .into_iter()
                .enumerate()
                .map(|(index, value)| Variant::new(format!("V{index}"), value))
                .collect();
            Descriptor::enumeration(name, repr, variants).expect("a valid enum")
        })
}

fn round_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

/// A repr(C)-like struct of these field types, with optional extra gaps and
/// an optional raised alignment.
fn structure(
    name: String,
    members: Vec<(Descriptor, u8)>,
    raise: u8,
    extensible: bool,
) -> Option<Descriptor> {
    let mut end = 0u64;
    let mut align = 1u64 << (raise % 4);
    let mut fields = Vec::new();
    for (index, (ty, gap)) in members.into_iter().enumerate() {
        let offset = round_up(end + u64::from(gap % 3) * ty.align(), ty.align());
        align = align.max(ty.align());
        end = offset + ty.size();
        fields.push(Field::new(format!("f{index}"), offset, ty));
    }
    Descriptor::structure(name, round_up(end, align), align, fields, extensible).ok()
}

fn descriptor() -> impl Strategy<Value = Descriptor> {
    let leaf = prop_oneof![primitive().prop_map(Descriptor::primitive), enumeration(),];
    leaf.prop_recursive(6, 48, 5, |inner| {
        prop_oneof![
            (inner.clone(), 0u64..5).prop_filter_map("array", |(element, len)| {
                Descriptor::array(element, len).ok()
            }),
            (
                name(),
                proptest::collection::vec((inner, any::<u8>()), 0..5),
                any::<u8>(),
                any::<bool>()
            )
                .prop_filter_map("struct", |(name, members, raise, extensible)| {
                    structure(name, members, raise, extensible)
                }),
        ]
    })
}

/// The same type as a compile-time [`Layout`], leaked: what a derive would
/// have built.
fn leak_layout(descriptor: &Descriptor) -> &'static Layout {
    let kind = match descriptor.kind() {
        TypeKind::Primitive(primitive) => LayoutKind::Primitive(*primitive),
        TypeKind::Array { element, len } => LayoutKind::Array {
            element: leak_layout(element),
            len: *len as usize,
        },
        TypeKind::Struct {
            name,
            fields,
            extensible,
        } => LayoutKind::Struct {
            name: Box::leak(name.clone().into_boxed_str()),
            fields: Box::leak(
                fields
                    .iter()
                    .map(|field| FieldLayout {
                        name: Box::leak(field.name.clone().into_boxed_str()),
                        offset: field.offset as usize,
                        layout: leak_layout(&field.ty),
                    })
                    .collect(),
            ),
            extensible: *extensible,
        },
        TypeKind::Enum {
            name,
            repr,
            variants,
        } => LayoutKind::Enum {
            name: Box::leak(name.clone().into_boxed_str()),
            repr: *repr,
            variants: Box::leak(
                variants
                    .iter()
                    .map(|variant| VariantLayout {
                        name: Box::leak(variant.name.clone().into_boxed_str()),
                        value: variant.value,
                    })
                    .collect(),
            ),
        },
    };
    Box::leak(Box::new(Layout {
        size: descriptor.size() as usize,
        align: descriptor.align() as usize,
        kind,
    }))
}

/// A decoded descriptor is valid: it re-encodes to a block that decodes to
/// itself, with the same fingerprint.
fn assert_valid(descriptor: &Descriptor) {
    let bytes = encode(descriptor);
    assert_eq!(bytes.len(), descriptor.encoded_len());
    assert!(bytes.len() <= MAX_SCHEMA_LEN);
    assert!(descriptor.depth() <= MAX_DEPTH);
    assert_eq!(decode(&bytes).as_ref(), Ok(descriptor));
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len().max(1);
    match *mutation {
        Mutation::Set(at, byte) if !bytes.is_empty() => bytes[at % len] = byte,
        Mutation::Flip(at, bit) if !bytes.is_empty() => bytes[at % len] ^= 1 << bit,
        Mutation::Insert(at, byte) => bytes.insert(at % (bytes.len() + 1), byte),
        Mutation::Remove(at) if !bytes.is_empty() => {
            bytes.remove(at % len);
        }
        Mutation::Truncate(at) => bytes.truncate(at % len),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn descriptors_round_trip_with_their_fingerprint(descriptor in descriptor()) {
        let bytes = encode(&descriptor);
        let decoded = decode(&bytes).expect("an encoding decodes");
        prop_assert_eq!(&decoded, &descriptor);
        prop_assert_eq!(decoded.fingerprint(), descriptor.fingerprint());
        prop_assert_eq!(encode(&decoded), bytes);
        prop_assert_eq!(compare(&decoded, &descriptor), Ok(Compat::Identical));
    }

    #[test]
    fn the_const_walk_agrees_with_the_encoder(descriptor in descriptor()) {
        let layout = leak_layout(&descriptor);
        prop_assert_eq!(layout.fingerprint(), descriptor.fingerprint());
        prop_assert_eq!(layout.encoded_len(), encode(&descriptor).len());
        prop_assert_eq!(layout.depth(), descriptor.depth());
        prop_assert_eq!(Descriptor::from_layout(layout), Ok(descriptor));
    }

    #[test]
    fn compare_is_identical_exactly_when_the_encodings_are(a in descriptor(), b in descriptor()) {
        let verdict = compare(&a, &b);
        prop_assert_eq!(verdict == Ok(Compat::Identical), encode(&a) == encode(&b));
        if let Err(mismatch) = verdict {
            prop_assert!(mismatch.to_string().ends_with(" in segment"));
            prop_assert!(mismatch.here.is_some() || mismatch.in_segment.is_some());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(descriptor) = decode(&bytes) {
            assert_valid(&descriptor);
        }
    }

    #[test]
    fn plausible_bytes_never_panic_the_decoder(
        tag in prop_oneof![1u8..=12, 0x20u8..=0x22],
        tail in proptest::collection::vec(
            prop_oneof![0u8..4, 0x20u8..0x23, any::<u8>()], 0..128),
    ) {
        let mut bytes = vec![SCHEMA_VERSION, tag];
        bytes.extend(tail);
        if let Ok(descriptor) = decode(&bytes) {
            assert_valid(&descriptor);
        }
    }

    #[test]
    fn mutated_encodings_decode_to_errors_or_valid_descriptors(
        descriptor in descriptor(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = encode(&descriptor);
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        if let Ok(decoded) = decode(&bytes) {
            assert_valid(&decoded);
            // A changed block is a changed type: its comparison still works.
            let _ = compare(&decoded, &descriptor).map_err(|m| m.to_string());
        }
    }

    #[test]
    fn nesting_is_bounded_at_every_depth(depth in 1usize..=MAX_DEPTH + 4, arrays in any::<u32>()) {
        // A chain of arrays and structs `depth` nodes deep, built bottom up.
        let mut built: Result<Descriptor, SchemaError> = Ok(Descriptor::primitive(Primitive::U16));
        for level in 1..depth {
            built = built.and_then(|inner| if arrays >> (level % 32) & 1 == 1 {
                Descriptor::array(inner, 2)
            } else {
                let (size, align) = (inner.size(), inner.align());
                Descriptor::structure(format!("L{level}"), size, align, vec![Field::new("x", 0, inner)], false)
            });
        }
        if depth <= MAX_DEPTH {
            let descriptor = built.expect("within the bound");
            prop_assert_eq!(descriptor.depth(), depth);
            assert_valid(&descriptor);
        } else {
            prop_assert_eq!(built.unwrap_err(), SchemaError::TooDeep);
        }
    }
}

#[test]
fn descriptors_larger_than_the_block_limit_are_refused() {
    let field = |index: usize| {
        Field::new(
            format!("{index:0>64}"),
            index as u64,
            Descriptor::primitive(Primitive::U8),
        )
    };
    // About 69 bytes a field: 900 fit, 1000 do not.
    let fits = Descriptor::structure("Big", 900, 1, (0..900).map(field).collect(), false)
        .expect("under 64 KiB");
    assert!(fits.encoded_len() < MAX_SCHEMA_LEN);
    assert_valid(&fits);
    let refused = Descriptor::structure("Big", 1000, 1, (0..1000).map(field).collect(), false);
    assert!(matches!(refused, Err(SchemaError::TooLarge { len }) if len > MAX_SCHEMA_LEN));
}

#[test]
fn hostile_counts_fail_by_running_out_of_bytes() {
    // A struct claiming u64::MAX fields, then nothing: an error, at once.
    let mut bytes = vec![SCHEMA_VERSION, 0x21, 1, b'S', 0, 0, 0];
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert!(matches!(decode(&bytes), Err(SchemaError::Truncated { .. })));
    // An array of u64::MAX u64s overflows its size.
    let mut bytes = vec![SCHEMA_VERSION, 0x20];
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    bytes.extend_from_slice(&[Primitive::U64.tag(), 3]);
    assert!(matches!(decode(&bytes), Err(SchemaError::Invalid(_))));
    // Names are bounded before they are read.
    let bytes = [SCHEMA_VERSION, 0x21, MAX_NAME_LEN as u8 + 1];
    assert!(matches!(
        decode(&bytes),
        Err(SchemaError::BadName { offset: 2, .. })
    ));
}
