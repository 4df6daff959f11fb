//! Which types have a layout, found from a plain `T: Pod`: every
//! `#[derive(ShmType)]` (and every built-in primitive) registers its layout in
//! a link-time list (`linkme`), keyed by its `TypeId`, so that `Shared<T>`,
//! the rings and the store record and check the full schema of any derived
//! `T` without a second bound or another constructor. A type without the
//! derive (or an array or other generic type, which no single registration
//! can name) is not found, and keeps the weaker identity: name, size and
//! alignment.
//!
//! Under Miri the list cannot be read (it lives in a linker section), and
//! nothing is found.

use std::any::TypeId;

use super::Layout;

/// One registered type (written by the derive; not for direct use).
#[doc(hidden)]
#[derive(Debug)]
pub struct Registered {
    /// `TypeId::of::<T>` (a function: `TypeId::of` is not `const`).
    pub type_id: fn() -> TypeId,
    /// `<T as ShmType>::LAYOUT`.
    pub layout: &'static Layout,
}

/// Every registered type.
#[doc(hidden)]
#[linkme::distributed_slice]
pub static REGISTERED: [Registered];

macro_rules! register_primitives {
    ($($ty:ty => $name:ident),* $(,)?) => {$(
        #[linkme::distributed_slice(REGISTERED)]
        static $name: Registered = Registered {
            type_id: TypeId::of::<$ty>,
            layout: &<$ty as super::ShmType>::LAYOUT,
        };
    )*};
}

register_primitives! {
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, u128 => U128,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128,
    f32 => F32, f64 => F64,
}

/// The layout of `T` if `T` derives (or is a primitive with) [`ShmType`](super::ShmType).
pub fn layout_of<T: 'static>() -> Option<&'static Layout> {
    #[cfg(not(miri))]
    {
        let id = TypeId::of::<T>();
        REGISTERED
            .iter()
            .find(|registered| (registered.type_id)() == id)
            .map(|registered| registered.layout)
    }
    #[cfg(miri)]
    None
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use crate::schema::ShmType;

    #[derive(Clone, Copy, crate::ShmType)]
    #[shm(crate = "crate")]
    #[repr(C)]
    struct Registers {
        a: u32,
        b: f32,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct NotDerived {
        a: u32,
    }

    #[test]
    fn derived_types_and_primitives_are_found_others_not() {
        assert_eq!(
            layout_of::<Registers>().map(|layout| layout.fingerprint()),
            Some(Registers::fingerprint())
        );
        assert_eq!(
            layout_of::<u64>().map(|layout| layout.fingerprint()),
            Some(u64::fingerprint())
        );
        assert!(layout_of::<NotDerived>().is_none());
        assert!(layout_of::<[u64; 4]>().is_none(), "generic: not registered");
    }
}
