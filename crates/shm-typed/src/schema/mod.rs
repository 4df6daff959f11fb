//! Structural type identity: what a type looks like byte by byte, so that two
//! programs can tell whether they agree on a segment's type beyond its name.
//!
//! `#[derive(ShmType)]` records at compile time a [`Layout`] of a
//! `#[repr(C)]` struct or a field-less integer enum: its stable name, size,
//! alignment, and for every field its name, offset and type, recursively.
//! From it come a 64-bit [fingerprint](ShmType::fingerprint), a canonical
//! [encoding](encode) small enough for a segment header, a [decoder](decode)
//! for untrusted blocks, a [comparison](compare) that names the first
//! differing field, and [Rust](render_rust) and [C](render_c) renderings.
//!
//! ```
//! use shm_typed::schema::{compare, Compat, ShmType};
//!
//! #[derive(Clone, Copy, ShmType)]
//! #[repr(u8)]
//! enum Side { Buy = 1, Sell }
//!
//! #[derive(Clone, Copy, ShmType)]
//! #[repr(C)]
//! struct Tick { price: f64, qty: u32, side: Side, pad: [u8; 3] }
//!
//! let tick = Tick::descriptor();
//! assert_eq!((tick.size(), tick.align()), (16, 8));
//! assert_eq!(Tick::fingerprint(), tick.fingerprint()); // a constant, no allocation
//! let bytes = shm_typed::schema::encode(&tick);
//! assert_eq!(bytes.len(), 62); // what a segment would hold
//! assert_eq!(bytes.len(), tick.encoded_len());
//! let stored = shm_typed::schema::decode(&bytes)?;
//! assert_eq!(compare(&tick, &stored), Ok(Compat::Identical));
//! # Ok::<(), shm_typed::schema::SchemaError>(())
//! ```
//!
//! What the derive refuses, with a compile error that says why: references,
//! raw and function pointers, tuples, structs without `#[repr(C)]` (or with
//! `packed`), generic types, unions, enums with fields or without an integer
//! `#[repr]`, and structs with implicit padding (the error names the field
//! the padding precedes); field types that do not implement [`ShmType`]
//! fail with an error naming the trait.
//!
//! ```compile_fail
//! #[derive(Clone, Copy, shm_typed::ShmType)]
//! #[repr(C)]
//! struct Padded { a: u8, b: u32 } // 3 bytes of padding before `b`
//! ```
//!
//! # Enums in a payload
//!
//! A segment's payload type is [`bytemuck::Pod`], which a field-less enum is
//! not (not every bit pattern is a variant). Keep the enum in its integer
//! repr and describe the field as the enum with `#[shm(as = ..)]`: the
//! schema, the comparison, `shm inspect` and the C header then name the
//! variants, and the struct stays `Pod` (a peer's value that names no variant
//! reads as the integer it is).
//!
//! ```
//! use shm_typed::schema::{render_value, ShmType};
//!
//! #[derive(Clone, Copy, ShmType)]
//! #[repr(u8)]
//! enum Side { Buy = 1, Sell = 2 }
//!
//! #[derive(Clone, Copy, ShmType, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Order { qty: u32, #[shm(as = Side)] side: u8, _pad: [u8; 3] }
//!
//! let order = Order { qty: 5, side: Side::Sell as u8, _pad: [0; 3] };
//! let shown = render_value(&Order::descriptor(), bytemuck::bytes_of(&order));
//! assert!(shown.contains("side: Sell (2),"));
//! ```
//!
//! # Padding
//!
//! The encoding has no padding entries: padding is whatever the field
//! offsets and sizes leave uncovered, computable from them. Derived types
//! have none (add explicit fields such as `_pad: [u8; 3]`, which are then part
//! of the identity); decoded descriptors may have gaps, and the renderers show
//! them.
//!
//! # Extensible structs
//!
//! `#[shm(extensible)]` on a struct says later versions may append fields.
//! [`compare`] then answers [`Compat::Prefix`] for a reader whose struct is
//! a strict prefix of the writer's: same name, the same leading fields, both
//! extensible. Such a reader may only read. Nested structs must match exactly.
//!
//! # Why a safe trait
//!
//! [`ShmType`] is a safe trait with one associated constant, [`ShmType::LAYOUT`].
//! Nothing unsafe relies on it: placing a value in shared memory still
//! requires [`bytemuck::Pod`] (every bit pattern valid, no padding), and the
//! segment code takes sizes and alignments from `size_of`/`align_of`, never
//! from the layout. A wrong hand-written layout can therefore make a type check
//! wrongly pass or fail, as a wrong type name can today, but cannot cause
//! undefined behaviour; it is refused by [`Descriptor::from_layout`] where it
//! contradicts itself. Keeping the trait safe and independent of `Pod` lets
//! the descriptor exist (and be printed) for any type. The built-in
//! implementations cover exactly Pod types: integers, floats and arrays of
//! `ShmType`s; `bool` and `char` are left out because not every bit pattern
//! is one of their values.
//!
//! The layout is a `const` built from `'static` data, so the fingerprint is a
//! `const fn` over it, evaluated at compile time (`const { .. }`); the owned
//! [`Descriptor`] is built on demand for encoding, comparison and rendering.

mod compare;
mod descriptor;
mod encoding;
mod error;
mod layout;
mod registry;
mod render;
mod value;

pub use compare::{compare, Compat, Mismatch};
pub use descriptor::{Descriptor, Field, TypeKind, Variant};
pub use encoding::{decode, encode, SCHEMA_VERSION};
pub use error::SchemaError;
pub use layout::{FieldLayout, Layout, LayoutKind, Primitive, VariantLayout};
pub use registry::layout_of;
pub use render::{render_c, render_c_all, render_rust};
pub use value::render_value;

/// What the derive's expansion names; not an API.
#[doc(hidden)]
pub mod __private {
    pub use super::layout::holds;
    pub use super::registry::{Registered, REGISTERED};
    pub use linkme;
}
/// The derive macro, beside the trait of the same name: importing
/// `schema::ShmType` brings both.
pub use shm_derive::ShmType;

/// How deep types may nest: a primitive or enum is 1 deep, each struct or
/// array around it one more. The decoder refuses deeper blocks, the derive
/// deeper types.
pub const MAX_DEPTH: usize = 16;
/// The largest schema block, in bytes, the decoder reads and the derive
/// allows a type to need.
pub const MAX_SCHEMA_LEN: usize = 64 * 1024;
/// The longest name (of a struct, enum, field or variant), in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A type whose structure is known at compile time; derive it with
/// `#[derive(ShmType)]`.
///
/// The layout is descriptive only (see [why a safe trait](self#why-a-safe-trait)).
/// The provided methods are not meant to be overridden.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `ShmType`, so its layout cannot be described",
    label = "this type has no `ShmType` layout",
    note = "derive it with `#[derive(ShmType)]` on a `#[repr(C)]` struct or a field-less enum with an integer `#[repr]`; references, pointers, `bool`, `char` and `String` cannot be placed in shared memory"
)]
pub trait ShmType {
    /// The type's layout, built at compile time.
    const LAYOUT: Layout;

    /// The owned, validated descriptor of the type.
    ///
    /// # Panics
    ///
    /// If a hand-written [`LAYOUT`](ShmType::LAYOUT) contradicts itself (see
    /// [`Descriptor::from_layout`]); derived and built-in layouts are checked
    /// at compile time and never do.
    fn descriptor() -> Descriptor {
        match Descriptor::from_layout(&Self::LAYOUT) {
            Ok(descriptor) => descriptor,
            Err(error) => panic!("ShmType::LAYOUT is inconsistent: {error}"),
        }
    }

    /// The structural fingerprint, computed at compile time: equal to
    /// `Self::descriptor().fingerprint()`.
    fn fingerprint() -> u64 {
        const { Self::LAYOUT.fingerprint() }
    }
}

macro_rules! primitives {
    ($($ty:ty => $primitive:ident),* $(,)?) => {$(
        impl ShmType for $ty {
            const LAYOUT: Layout = Layout {
                size: size_of::<$ty>(),
                align: align_of::<$ty>(),
                kind: LayoutKind::Primitive(Primitive::$primitive),
            };
        }
    )*};
}

primitives! {
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, u128 => U128,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128,
    f32 => F32, f64 => F64,
}

impl<T: ShmType, const N: usize> ShmType for [T; N] {
    const LAYOUT: Layout = Layout {
        size: size_of::<[T; N]>(),
        align: align_of::<[T; N]>(),
        kind: LayoutKind::Array {
            element: &T::LAYOUT,
            len: N,
        },
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_layouts_are_valid_and_match_their_fingerprints() {
        fn check<T: ShmType>() {
            let descriptor = T::descriptor();
            assert_eq!(descriptor.size(), size_of::<T>() as u64);
            assert_eq!(descriptor.align(), align_of::<T>() as u64);
            assert_eq!(descriptor.fingerprint(), T::fingerprint());
            assert_eq!(encode(&descriptor).len(), T::LAYOUT.encoded_len());
            assert_eq!(decode(&encode(&descriptor)), Ok(descriptor));
        }
        check::<u8>();
        check::<u16>();
        check::<u32>();
        check::<u64>();
        check::<u128>();
        check::<i8>();
        check::<i16>();
        check::<i32>();
        check::<i64>();
        check::<i128>();
        check::<f32>();
        check::<f64>();
        check::<[u32; 0]>();
        check::<[[i16; 3]; 1000]>();
    }

    #[test]
    fn a_contradictory_hand_written_layout_is_refused() {
        static WRONG: Layout = Layout {
            size: 3,
            align: 4,
            kind: LayoutKind::Primitive(Primitive::U32),
        };
        assert!(matches!(
            Descriptor::from_layout(&WRONG),
            Err(SchemaError::Invalid(_))
        ));
    }
}
