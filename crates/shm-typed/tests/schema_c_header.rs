//! The C header renderer against a C compiler: `sizeof`, `_Alignof` and
//! `offsetof` of the rendered types must be the descriptor's, checked with
//! `_Static_assert` by `cc -c`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use shm_typed::schema::{render_c, Descriptor, ShmType, TypeKind};

#[derive(Clone, Copy, ShmType)]
#[repr(i32)]
enum Venue {
    Lit = -1,
    Dark = 7,
}

#[derive(Clone, Copy, ShmType)]
#[repr(C)]
struct Quote {
    price: f64,
    qty: [u32; 2],
}

/// Aligned beyond its fields (16, for `i128`): rendered with `_Alignas`.
#[derive(Clone, Copy, ShmType)]
#[repr(C, align(32))]
struct Book {
    bids: [Quote; 3],
    asks: [[Quote; 2]; 2],
    venue: Venue,
    side: u8,
    flags: [u8; 3],
    seq: u64,
    total: i128,
    ratio: f32,
    spare: u32,
    tail: u64,
}

/// `_Static_assert`s for `descriptor`'s size, alignment and every field's
/// offset and size, for each named type in it (each once, by C name).
fn assertions(descriptor: &Descriptor, out: &mut String, seen: &mut Vec<String>) {
    let TypeKind::Struct { name, fields, .. } = descriptor.kind() else {
        if let TypeKind::Array { element, .. } = descriptor.kind() {
            assertions(element, out, seen);
        }
        return;
    };
    for field in fields {
        assertions(&field.ty, out, seen);
    }
    if seen.contains(name) {
        return;
    }
    seen.push(name.clone());
    let _ = writeln!(
        out,
        "_Static_assert(sizeof({name}) == {}, \"sizeof {name}\");",
        descriptor.size()
    );
    let _ = writeln!(
        out,
        "_Static_assert(_Alignof({name}) == {}, \"_Alignof {name}\");",
        descriptor.align()
    );
    for field in fields {
        let member = &field.name;
        let _ = writeln!(
            out,
            "_Static_assert(offsetof({name}, {member}) == {}, \"offsetof {name}.{member}\");",
            field.offset
        );
        let _ = writeln!(
            out,
            "_Static_assert(sizeof((({name} *)0)->{member}) == {}, \"sizeof {name}.{member}\");",
            field.ty.size()
        );
    }
}

/// A directory of this test's own under cargo's per-target temporary
/// directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        // Nothing to do if it is already gone.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_c_header_has_the_descriptors_layout() {
    // No skip without `cc`: Rust links through it on Linux, and .ci/run
    // installs it where it is missing.
    assert!(
        Command::new("cc").arg("--version").output().is_ok(),
        "no `cc` on PATH: install a C compiler (gcc) to compile the rendered header"
    );
    let descriptor = Book::descriptor();
    let header = render_c(&descriptor);
    assert!(
        header.contains("typedef int32_t Venue; /* enum */"),
        "{header}"
    );
    assert!(
        header.contains("#define Venue_Lit ((Venue)-1LL)"),
        "{header}"
    );
    assert!(
        header.contains("    Quote asks[2][2]; /* offset 48 */"),
        "{header}"
    );
    assert!(
        header.contains("    _Alignas(32) Quote bids[3]; /* offset 0 */"),
        "{header}"
    );
    assert!(
        header.find("typedef struct Quote").unwrap() < header.find("typedef struct Book").unwrap(),
        "nested types come first:\n{header}"
    );

    let scratch = Scratch(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("schema-c-{}", std::process::id())),
    );
    std::fs::create_dir_all(&scratch.0).unwrap();
    std::fs::write(scratch.0.join("book.h"), &header).unwrap();
    let mut check = String::from("#include <stddef.h>\n#include \"book.h\"\n\n");
    assertions(&descriptor, &mut check, &mut Vec::new());
    let _ = writeln!(
        check,
        "_Static_assert(sizeof(Venue) == 4, \"sizeof Venue\");"
    );
    let _ = writeln!(
        check,
        "_Static_assert(Venue_Lit == -1 && Venue_Dark == 7, \"Venue values\");"
    );
    std::fs::write(scratch.0.join("check.c"), &check).unwrap();

    let output = Command::new("cc")
        .args([
            "-std=c11", "-Wall", "-Werror", "-c", "check.c", "-o", "check.o",
        ])
        .current_dir(&scratch.0)
        .output()
        .expect("cc runs");
    assert!(
        output.status.success(),
        "cc -c failed:\n{}\n--- book.h\n{header}\n--- check.c\n{check}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Names a hostile (or merely unlucky) schema may carry: C keywords, macros
/// of the compiler and of `<stdint.h>`, reserved identifiers, variant
/// `#define`s that would spell a type, an alias or a member, a nested type
/// named like a root. The header must still compile, in C11 and GNU11, with
/// warnings as errors.
#[test]
fn hostile_names_still_compile() {
    use shm_typed::schema::{render_c_all, Field, Primitive, Variant};
    let enumeration = |name: &str, variants: &[&str]| {
        Descriptor::enumeration(
            name,
            Primitive::U8,
            variants
                .iter()
                .enumerate()
                .map(|(i, v)| Variant::new(*v, i as u64))
                .collect(),
        )
        .unwrap()
    };
    let u32_ty = Descriptor::primitive(Primitive::U32);
    let names = [
        "linux",
        "unix",
        "INT8_MAX",
        "UINT64_C",
        "SIZE_MAX",
        "__int128",
        "_Bool",
        "constexpr",
        "E_A",
        "shm_value",
        "SHM_KIND",
        "int",
        "uint8_t",
        "errno",
        "a-b",
        "a_b",
    ];
    let mut fields: Vec<Field> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Field::new(*name, 4 * i as u64, u32_ty.clone()))
        .collect();
    let mut offset = 4 * names.len() as u64;
    for (name, variants) in [
        ("uint8", &["t"][..]),
        ("_", &["int128"][..]),
        ("shm", &["value", "root"][..]),
        ("E", &["A"][..]),
        ("x", &["a-b", "a_b"][..]),
        ("SHM", &["KIND", "VALUE"][..]),
    ] {
        fields.push(Field::new(
            format!("e{offset}"),
            offset,
            enumeration(name, variants),
        ));
        offset += 1;
    }
    // A nested struct named like the root and like a later alias.
    let inner = |name: &str| {
        Descriptor::structure(name, 4, 4, vec![Field::new("v", 0, u32_ty.clone())], false).unwrap()
    };
    let offset = offset.next_multiple_of(4);
    fields.push(Field::new("nested", offset, inner("Hostile")));
    fields.push(Field::new("other", offset + 4, inner("shm_object")));
    let size = (offset + 8).next_multiple_of(4);
    let root = Descriptor::structure("Hostile", size, 4, fields, false).unwrap();
    let object = Descriptor::structure(
        "shm_object",
        size,
        4,
        vec![Field::new("value", 0, root.clone())],
        false,
    )
    .unwrap();
    let unnamed = Descriptor::array(u32_ty.clone(), 2).unwrap();
    let header = render_c_all(&[
        (&root, Some("shm_value")),
        (&object, None),
        (&unnamed, None),
    ]);
    assert!(header.contains("} shm_object; /* size"), "{header}");
    assert!(header.contains("typedef Hostile shm_value;"), "{header}");
    let scratch = Scratch(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("schema-c-hostile-{}", std::process::id())),
    );
    std::fs::create_dir_all(&scratch.0).unwrap();
    std::fs::write(scratch.0.join("hostile.h"), &header).unwrap();
    let check = format!(
        "#include <stddef.h>\n#include <stdint.h>\n#include \"hostile.h\"\n\
         _Static_assert(sizeof(shm_value) == {size}, \"root\");\n\
         _Static_assert(sizeof(shm_object) == {size}, \"object\");\n\
         _Static_assert(sizeof(uint8_t) == 1 && INT8_MAX == 127, \"stdint intact\");\n\
         int main(void) {{ return 0; }}\n"
    );
    std::fs::write(scratch.0.join("check.c"), &check).unwrap();
    for standard in ["-std=c11", "-std=gnu11"] {
        let output = Command::new("cc")
            .args([
                standard, "-Wall", "-Wextra", "-Werror", "-c", "check.c", "-o", "check.o",
            ])
            .current_dir(&scratch.0)
            .output()
            .expect("cc runs");
        assert!(
            output.status.success(),
            "cc {standard} failed:\n{}\n--- hostile.h\n{header}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
