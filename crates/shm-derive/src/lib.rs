//! `#[derive(ShmType)]`: records a type's layout for `shm-typed`'s schema
//! checks. Use it through `shm_typed::ShmType`; the trait, the descriptor
//! and what they are for are documented in `shm_typed::schema`.
//!
//! ```
//! use shm_typed::schema::ShmType;
//!
//! #[derive(Clone, Copy, ShmType)]
//! #[repr(C)]
//! #[shm(name = "feed.Tick", extensible)]
//! struct Tick { price: f64, qty: u32, venue: u32 }
//!
//! assert_eq!(Tick::descriptor().name(), Some("feed.Tick"));
//! ```
//!
//! Accepted: `#[repr(C)]` structs (named, tuple or unit; `align(N)` allowed)
//! whose fields leave no padding, and field-less enums with
//! `#[repr(u8 | u16 | u32 | u64 | i8 | i16 | i32 | i64)]`. Attributes, in
//! `#[shm(..)]` on the type:
//!
//! - `name = "..."`: the stable name (default: the type's identifier), 1 to
//!   64 bytes without control characters;
//! - `extensible` (structs): later versions may append fields;
//! - `crate = "path"`: where `shm_typed` is (default `::shm_typed`).
//!
//! On a field, `#[shm(as = T)]` describes it as `T` while it stores `T`'s
//! representation: an enum kept in a `u8` field (so that the struct stays
//! `bytemuck::Pod`, which a field-less enum is not) is described, compared
//! and shown as the enum. The field's type must be the enum's integer repr,
//! or an array of it of the same length as an array of the enum (checked at
//! compile time).
//!
//! ```
//! use shm_typed::schema::{render_rust, ShmType};
//!
//! #[derive(Clone, Copy, ShmType)]
//! #[repr(u8)]
//! enum Side { Buy = 1, Sell = 2 }
//!
//! #[derive(Clone, Copy, ShmType, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Order { qty: u32, #[shm(as = Side)] side: u8, #[shm(as = [Side; 3])] legs: [u8; 3] }
//!
//! assert!(render_rust(&Order::descriptor()).contains("/* 4 */ side: Side, // enum u8"));
//! ```

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Error, Fields, LitStr, Path, Type};

/// The longest name a descriptor holds (`shm_typed::schema::MAX_NAME_LEN`).
const MAX_NAME_LEN: usize = 64;

/// Derives `shm_typed::schema::ShmType`; see the crate documentation.
#[proc_macro_derive(ShmType, attributes(shm))]
pub fn derive_shm_type(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// What `#[shm(..)]` on the type says.
struct Options {
    name: Option<LitStr>,
    extensible: Option<Span>,
    krate: Path,
}

fn options(input: &DeriveInput) -> syn::Result<Options> {
    let mut options = Options {
        name: None,
        extensible: None,
        krate: syn::parse_quote!(::shm_typed),
    };
    for attr in input
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("shm"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let name: LitStr = meta.value()?.parse()?;
                check_name(&name.value(), name.span())?;
                options.name = Some(name);
            } else if meta.path.is_ident("extensible") {
                options.extensible = Some(meta.path.span());
            } else if meta.path.is_ident("crate") {
                options.krate = meta.value()?.parse::<LitStr>()?.parse()?;
            } else {
                return Err(meta.error(
                    "unknown `shm` attribute: expected `name = \"...\"`, `extensible` or `crate = \"...\"`",
                ));
            }
            Ok(())
        })?;
    }
    Ok(options)
}

/// The type a field's `#[shm(as = T)]` describes it as, if any.
fn field_as(field: &syn::Field) -> syn::Result<Option<Type>> {
    let mut described = None;
    for attr in field
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("shm"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("as") {
                described = Some(meta.value()?.parse::<Type>()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `shm` attribute on a field: expected `as = Type` (`name`, `extensible` and `crate` belong on the type)",
                ))
            }
        })?;
    }
    Ok(described)
}

fn check_name(name: &str, span: Span) -> syn::Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::new(
            span,
            "ShmType: a name must be 1 to 64 bytes without control characters",
        ));
    }
    Ok(())
}

/// What `#[repr(..)]` says.
#[derive(Default)]
struct Repr {
    c: bool,
    packed: Option<Span>,
    transparent: Option<Span>,
    integer: Option<(syn::Ident, &'static str, &'static str)>,
}

/// The integer representations an enum may have: name, `Primitive`
/// variant, the unsigned type of its width.
const INTEGER_REPRS: &[(&str, &str, &str)] = &[
    ("u8", "U8", "u8"),
    ("u16", "U16", "u16"),
    ("u32", "U32", "u32"),
    ("u64", "U64", "u64"),
    ("i8", "I8", "u8"),
    ("i16", "I16", "u16"),
    ("i32", "I32", "u32"),
    ("i64", "I64", "u64"),
];

fn repr(input: &DeriveInput) -> syn::Result<Repr> {
    let mut repr = Repr::default();
    for attr in input
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("repr"))
    {
        attr.parse_nested_meta(|meta| {
            let ident = meta.path.get_ident().map(ToString::to_string);
            match ident.as_deref() {
                Some("C") => repr.c = true,
                Some("packed") => {
                    repr.packed = Some(meta.path.span());
                    // `packed(N)`
                    if meta.input.peek(syn::token::Paren) {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        content.parse::<TokenStream2>()?;
                    }
                }
                Some("transparent") => repr.transparent = Some(meta.path.span()),
                Some("align") => {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    content.parse::<TokenStream2>()?;
                }
                Some(other) => {
                    if let Some(&(_, primitive, unsigned)) =
                        INTEGER_REPRS.iter().find(|(name, _, _)| *name == other)
                    {
                        let ident = meta.path.get_ident().cloned();
                        repr.integer = ident.map(|ident| (ident, primitive, unsigned));
                    } else if other == "u128" || other == "i128" {
                        return Err(meta.error(
                            "ShmType: enums may be represented as u8 to u64 or i8 to i64, not 128-bit integers",
                        ));
                    } else if other == "usize" || other == "isize" {
                        return Err(meta.error(
                            "ShmType: `usize`/`isize` differ between platforms; use a fixed-width integer repr",
                        ));
                    } else {
                        return Err(meta.error(format!("ShmType: unsupported repr `{other}`")));
                    }
                }
                None => return Err(meta.error("ShmType: unsupported repr")),
            }
            Ok(())
        })?;
    }
    Ok(repr)
}

/// Refuses field types that can never be in shared memory, by their syntax;
/// every other type must implement `ShmType`, which the compiler checks.
fn check_field_type(ty: &Type) -> syn::Result<()> {
    let refuse = |why: &str| Err(Error::new_spanned(ty, why));
    match ty {
        Type::Reference(_) => refuse(
            "ShmType: references cannot be placed in shared memory: they point into one process's address space",
        ),
        Type::Ptr(_) => refuse(
            "ShmType: raw pointers cannot be placed in shared memory: an address means nothing in another process",
        ),
        Type::BareFn(_) => refuse(
            "ShmType: function pointers cannot be placed in shared memory: an address means nothing in another process",
        ),
        Type::Tuple(_) => refuse(
            "ShmType: tuples have no guaranteed layout; use a #[repr(C)] struct",
        ),
        Type::Slice(_) | Type::TraitObject(_) | Type::ImplTrait(_) => refuse(
            "ShmType: a field must have a fixed size",
        ),
        Type::Array(array) => check_field_type(&array.elem),
        Type::Paren(inner) => check_field_type(&inner.elem),
        Type::Group(inner) => check_field_type(&inner.elem),
        _ => Ok(()),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let options = options(input)?;
    let repr = repr(input)?;
    let ident = &input.ident;
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        return Err(Error::new(
            input.generics.span(),
            "ShmType cannot be derived for generic types: the layout must be fixed by the definition",
        ));
    }
    let name = match &options.name {
        Some(name) => name.value(),
        None => {
            let name = ident.unraw().to_string();
            check_name(&name, ident.span())?;
            name
        }
    };
    match &input.data {
        Data::Struct(data) => expand_struct(input, &options, &repr, &name, &data.fields),
        Data::Enum(data) => {
            if let Some(span) = options.extensible {
                return Err(Error::new(
                    span,
                    "ShmType: `extensible` applies to structs only",
                ));
            }
            expand_enum(input, &options, &repr, &name, data)
        }
        Data::Union(data) => Err(Error::new(
            data.union_token.span(),
            "ShmType cannot be derived for unions: which field holds a value is not recorded in memory",
        )),
    }
}

fn expand_struct(
    input: &DeriveInput,
    options: &Options,
    repr: &Repr,
    name: &str,
    fields: &Fields,
) -> syn::Result<TokenStream2> {
    let ident = &input.ident;
    if let Some(span) = repr.packed {
        return Err(Error::new(
            span,
            "ShmType: packed structs are not supported: their fields may be unaligned",
        ));
    }
    if let Some(span) = repr.transparent {
        return Err(Error::new(
            span,
            "ShmType: use #[repr(C)] rather than #[repr(transparent)]",
        ));
    }
    if !repr.c {
        return Err(Error::new(
            ident.span(),
            "ShmType requires #[repr(C)]: the default (Rust) layout may reorder fields and change between compiler versions",
        ));
    }
    let krate = &options.krate;
    let schema = quote!(#krate::schema);
    let extensible = options.extensible.is_some();
    let mut layouts = Vec::new();
    let mut padding_checks = Vec::new();
    let mut end = quote!(0usize);
    for (index, field) in fields.iter().enumerate() {
        let described = field_as(field)?;
        check_field_type(&field.ty)?;
        let ty = &field.ty;
        let (member, field_name) = match &field.ident {
            Some(field_ident) => {
                let field_name = field_ident.unraw().to_string();
                check_name(&field_name, field_ident.span())?;
                (quote!(#field_ident), field_name)
            }
            None => {
                let index = syn::Index::from(index);
                (quote!(#index), index.index.to_string())
            }
        };
        let layout = match &described {
            None => quote_spanned! {ty.span()=> &<#ty as #schema::ShmType>::LAYOUT },
            Some(described) => {
                let message = format!(
                    "ShmType: field `{field_name}` is described `#[shm(as = {})]`, but its type \
                     does not hold that type's bits: it must be the enum's integer repr (same \
                     width and signedness), or an array of them of the same length",
                    quote!(#described).to_string().replace(' ', "")
                );
                padding_checks.push(quote_spanned! {described.span()=>
                    ::core::assert!(
                        #schema::__private::holds(
                            &<#described as #schema::ShmType>::LAYOUT,
                            &<#ty as #schema::ShmType>::LAYOUT,
                        ),
                        #message
                    );
                });
                quote_spanned! {described.span()=> &<#described as #schema::ShmType>::LAYOUT }
            }
        };
        layouts.push(quote_spanned! {ty.span()=>
            #schema::FieldLayout {
                name: #field_name,
                offset: ::core::mem::offset_of!(Self, #member),
                layout: #layout,
            }
        });
        let message = format!(
            "ShmType: `{ident}` has implicit padding before field `{field_name}`; \
             add an explicit padding field (e.g. `_pad: [u8; N]`) or reorder the fields"
        );
        padding_checks.push(quote! {
            ::core::assert!(::core::mem::offset_of!(#ident, #member) == #end, #message);
        });
        end = quote!((::core::mem::offset_of!(#ident, #member) + ::core::mem::size_of::<#ty>()));
    }
    let bounds = bounds(ident, &schema);
    let trailing = format!(
        "ShmType: `{ident}` has implicit padding at its end; \
         add an explicit padding field (e.g. `_pad: [u8; N]`) so its fields fill its size"
    );
    Ok(quote! {
        const _: () = {
            impl #schema::ShmType for #ident {
                const LAYOUT: #schema::Layout = #schema::Layout {
                    size: ::core::mem::size_of::<Self>(),
                    align: ::core::mem::align_of::<Self>(),
                    kind: #schema::LayoutKind::Struct {
                        name: #name,
                        fields: &[#(#layouts),*],
                        extensible: #extensible,
                    },
                };
            }
            #(#padding_checks)*
            ::core::assert!(#end == ::core::mem::size_of::<#ident>(), #trailing);
            #bounds
        };
    })
}

/// Const assertions that the type's schema fits the decoder's bounds, and
/// the type's registration (see `shm_typed::schema::layout_of`).
fn bounds(ident: &syn::Ident, schema: &TokenStream2) -> TokenStream2 {
    let private = quote!(#schema::__private);
    quote! {
        #[#private::linkme::distributed_slice(#private::REGISTERED)]
        #[linkme(crate = #private::linkme)]
        static REGISTERED: #private::Registered = #private::Registered {
            type_id: ::core::any::TypeId::of::<#ident>,
            layout: &<#ident as #schema::ShmType>::LAYOUT,
        };
        ::core::assert!(
            <#ident as #schema::ShmType>::LAYOUT.depth() <= #schema::MAX_DEPTH,
            "ShmType: the type nests structs and arrays more than 16 deep (schema::MAX_DEPTH)"
        );
        ::core::assert!(
            <#ident as #schema::ShmType>::LAYOUT.encoded_len() <= #schema::MAX_SCHEMA_LEN,
            "ShmType: the type's schema block would exceed 64 KiB (schema::MAX_SCHEMA_LEN)"
        );
    }
}

fn expand_enum(
    input: &DeriveInput,
    options: &Options,
    repr: &Repr,
    name: &str,
    data: &syn::DataEnum,
) -> syn::Result<TokenStream2> {
    let ident = &input.ident;
    let Some((repr_ident, primitive, unsigned)) = &repr.integer else {
        return Err(Error::new(
            ident.span(),
            "ShmType requires an enum to have an integer repr, one of #[repr(u8)], #[repr(u16)], #[repr(u32)], #[repr(u64)], #[repr(i8)], #[repr(i16)], #[repr(i32)], #[repr(i64)]: without it the size is not fixed",
        ));
    };
    if data.variants.is_empty() {
        return Err(Error::new(
            ident.span(),
            "ShmType: an enum needs at least one variant",
        ));
    }
    let krate = &options.krate;
    let schema = quote!(#krate::schema);
    let bounds = bounds(ident, &schema);
    let primitive = syn::Ident::new(primitive, repr_ident.span());
    let unsigned = syn::Ident::new(unsigned, repr_ident.span());
    let mut variants = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            return Err(Error::new(
                variant.fields.span(),
                format!(
                    "ShmType: enums must be field-less: variant `{}` has fields, whose layout and validity cannot be checked in shared memory",
                    variant.ident
                ),
            ));
        }
        let variant_ident = &variant.ident;
        let variant_name = variant_ident.unraw().to_string();
        check_name(&variant_name, variant_ident.span())?;
        variants.push(quote! {
            #schema::VariantLayout {
                name: #variant_name,
                value: (Self::#variant_ident as #unsigned) as u64,
            }
        });
    }
    Ok(quote! {
        const _: () = {
            impl #schema::ShmType for #ident {
                const LAYOUT: #schema::Layout = #schema::Layout {
                    size: ::core::mem::size_of::<Self>(),
                    align: ::core::mem::align_of::<Self>(),
                    kind: #schema::LayoutKind::Enum {
                        name: #name,
                        repr: #schema::Primitive::#primitive,
                        variants: &[#(#variants),*],
                    },
                };
            }
            #bounds
        };
    })
}
