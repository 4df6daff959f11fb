//! `shm inspect --c-header` against a C compiler: the header it writes for a
//! segment compiles (`-Wall -Wextra -Werror`, its own `_Static_assert`s
//! included), every `offsetof`/`sizeof` in it equals the Rust side's
//! `offset_of!`/`size_of`, and a C program that attaches the segment reads
//! through it the values Rust wrote. Needs `cc` (`.ci/run` installs it).
//! Also `shm inspect` showing the stored schema and the value field by field.

mod common;

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use common::{run_ok, unique, RemoveSysv, UnlinkPosix};
use shm_typed::format::{
    CreatorRecord, Header, LayoutDescriptor, LockRecord, SchemaRecord, LOCK_OFFSET, PAYLOAD_OFFSET,
};
use shm_typed::schema::ShmType;
use shm_typed::{Location, Shared, ShmMutex, SpscRing};

#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable, ShmType)]
#[repr(C)]
struct Level {
    price: i64,
    qty: u32,
    orders: u16,
    flags: u16,
}

#[derive(Clone, Copy, ShmType)]
#[repr(u8)]
enum Side {
    Buy = 1,
    Sell = 2,
}

/// Aligned beyond its fields (32; `i128` needs 16), with a nested struct
/// array, an enum kept in a `u8` (a payload is `Pod`, which an enum is not)
/// and every width of integer.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable, ShmType)]
#[repr(C, align(32))]
struct Tick {
    price: f64,
    seq: u64,
    levels: [Level; 3],
    wide: i128,
    #[shm(as = Side)]
    side: u8,
    venue: [u8; 7],
    ratio: f32,
    count: u32,
    tail: [u64; 4],
}

const TICK: Tick = Tick {
    price: 101.25,
    seq: 77,
    levels: [
        Level {
            price: -5,
            qty: 10,
            orders: 2,
            flags: 1,
        },
        Level {
            price: 6,
            qty: 20,
            orders: 3,
            flags: 0,
        },
        Level {
            price: 7,
            qty: 30,
            orders: 4,
            flags: 9,
        },
    ],
    wide: -(1i128 << 100),
    side: Side::Sell as u8,
    venue: *b"XNASDAQ",
    ratio: 0.5,
    count: 3,
    tail: [0, 0, 0, 9],
};

/// `(C expression, Rust value)`: what the C program prints, and what it must be.
fn layout_checks() -> Vec<(String, usize)> {
    let mut checks = Vec::new();
    let mut push = |expression: &str, value: usize| checks.push((expression.to_owned(), value));
    push("sizeof(shm_header)", size_of::<Header>());
    push("sizeof(shm_layout)", size_of::<LayoutDescriptor>());
    push("sizeof(shm_creator)", size_of::<CreatorRecord>());
    push("sizeof(shm_schema_record)", size_of::<SchemaRecord>());
    push("sizeof(shm_lock)", size_of::<ShmMutex>());
    push("_Alignof(shm_lock)", std::mem::align_of::<ShmMutex>());
    push("sizeof(shm_value)", size_of::<Tick>());
    push("_Alignof(shm_value)", std::mem::align_of::<Tick>());
    push("offsetof(shm_object, lock)", LOCK_OFFSET);
    push("offsetof(shm_object, value)", PAYLOAD_OFFSET);
    macro_rules! fields {
        ($c:literal, $rust:ty: $($field:ident),*) => {$(
            push(
                &format!("offsetof({}, {})", $c, stringify!($field)),
                offset_of!($rust, $field),
            );
            push(
                &format!("sizeof((({} *)0)->{})", $c, stringify!($field)),
                size_of_field(|value: &$rust| &value.$field),
            );
        )*};
    }
    fields!("shm_header", Header: magic, format_version, kind, state, byte_order, segment_len,
        layout, creator, schema, reserved);
    fields!("shm_layout", LayoutDescriptor: payload_offset, payload_size, payload_align,
        element_size, capacity, type_name_hash, pointer_width, type_name_len, reserved, type_name);
    fields!("shm_creator", CreatorRecord: pid, uid, start_time, pid_namespace, token, registry,
        registry_ctime);
    fields!("shm_schema_record", SchemaRecord: fingerprint, offset, len, reserved);
    fields!("shm_lock", LockRecord: owner, wakes, flags, record, sequence, namespace, token,
        registry, registry_ctime, reserved);
    fields!("shm_value", Tick: price, seq, levels, wide, side, venue, ratio, count, tail);
    fields!("Level", Level: price, qty, orders, flags);
    push("sizeof(Side)", size_of::<Side>());
    push("Side_Buy", Side::Buy as usize);
    push("Side_Sell", Side::Sell as usize);
    checks
}

fn size_of_field<S, F>(_: impl Fn(&S) -> &F) -> usize {
    size_of::<F>()
}

/// Compiles `main` with the generated header and runs it with `args`.
fn compile_and_run(dir: &Path, header: &str, main: &str, args: &[&str]) -> String {
    std::fs::write(dir.join("segment.h"), header).unwrap();
    std::fs::write(dir.join("main.c"), main).unwrap();
    let binary = dir.join("main");
    // ISO C11, and GNU C11 (gcc's default dialect, which predefines `linux`
    // and `unix`); the second build is the one run.
    for standard in ["-std=c11", "-std=gnu11"] {
        let compiled = Command::new("cc")
            .args([standard, "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&binary)
            .arg(dir.join("main.c"))
            .output()
            .expect("cc runs (install a C compiler; .ci/run installs gcc)");
        assert!(
            compiled.status.success(),
            "cc {standard} failed:\n{}\n--- segment.h ---\n{header}",
            String::from_utf8_lossy(&compiled.stderr)
        );
    }
    let ran = Command::new(&binary).args(args).output().unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    String::from_utf8(ran.stdout).unwrap()
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(unique("shm-c-header"));
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn private_id(location: &Location) -> i32 {
    match location {
        Location::Id(id) => *id,
        other => panic!("a private segment has an id, not {other:?}"),
    }
}

#[test]
fn the_c_header_matches_rust_and_reads_the_segment() {
    let object = Shared::<Tick>::options()
        .create(Location::Private, TICK)
        .unwrap();
    let id = private_id(object.location());
    let _remove = RemoveSysv(id);
    let header = run_ok(&["inspect", &id.to_string(), "--c-header"]);

    let checks = layout_checks();
    let mut main = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\
         #include <sys/shm.h>\n#include \"segment.h\"\n\nint main(int argc, char **argv) {\n",
    );
    for (expression, _) in &checks {
        main.push_str(&format!(
            "    printf(\"%s=%zu\\n\", \"{expression}\", (size_t)({expression}));\n"
        ));
    }
    // Read the segment Rust wrote, through the header's types alone.
    main.push_str(
        r#"    if (argc < 2) return 2;
    const shm_object *o = shmat(atoi(argv[1]), NULL, SHM_RDONLY);
    if (o == (void *)-1) { perror("shmat"); return 1; }
    if (memcmp(o->header.magic, SHM_MAGIC, 8) != 0) return 3;
    if (o->header.state != SHM_STATE_READY) return 4;
    if (o->header.schema.fingerprint != SHM_SCHEMA_FINGERPRINT) return 5;
    const shm_value *v = &o->value;
    printf("format=%u kind=%u\n", o->header.format_version, o->header.kind);
    printf("price=%.2f seq=%llu\n", v->price, (unsigned long long)v->seq);
    printf("level2=%lld,%u,%u,%u\n", (long long)v->levels[2].price, v->levels[2].qty,
        (unsigned)v->levels[2].orders, (unsigned)v->levels[2].flags);
    printf("wide_high=%lld\n", (long long)(v->wide >> 64));
    printf("side=%s venue=%.7s ratio=%.1f count=%u\n",
        v->side == Side_Sell ? "Sell" : "other", (const char *)v->venue, v->ratio, v->count);
    printf("level0_price=%lld\n", (long long)v->levels[0].price);
    shmdt(o);
    return 0;
}
"#,
    );
    let dir = TempDir::new();
    let out = compile_and_run(&dir.0, &header, &main, &[&id.to_string()]);
    for (expression, rust) in &checks {
        let line = format!("{expression}={rust}");
        assert!(
            out.lines().any(|l| l == line),
            "C says otherwise for {expression} (Rust: {rust}):\n{out}\n--- segment.h ---\n{header}"
        );
    }
    for expected in [
        "format=3 kind=1",
        "price=101.25 seq=77",
        "level2=7,30,4,9",
        &format!("wide_high={}", TICK.wide >> 64),
        "side=Sell venue=XNASDAQ ratio=0.5 count=3",
        "level0_price=-5",
    ] {
        assert!(
            out.lines().any(|l| l == expected),
            "{expected} missing:\n{out}"
        );
    }
}

#[test]
fn a_ring_header_and_one_without_a_schema_compile_too() {
    let name = format!("/{}", unique("shm-c-header-ring"));
    let _unlink = UnlinkPosix(name.clone());
    let _ring = SpscRing::<Tick>::create(Location::posix(&name), 4).unwrap();
    let ring_header = run_ok(&["inspect", &name, "--c-header"]);
    assert!(
        ring_header.contains("shm_value is its element type, from the segment's schema"),
        "{ring_header}"
    );
    assert!(!ring_header.contains("shm_object"), "{ring_header}");
    // A type without ShmType: an opaque struct of its size and alignment.
    let plain = Shared::<[u32; 3]>::options()
        .type_name("Opaque")
        .create(Location::Private, [1, 2, 3])
        .unwrap();
    let id = private_id(plain.location());
    let _remove = RemoveSysv(id);
    let plain_header = run_ok(&["inspect", &id.to_string(), "--c-header"]);
    let dir = TempDir::new();
    for header in [&ring_header, &plain_header] {
        let out = compile_and_run(
            &dir.0,
            header,
            "#include <stdio.h>\n#include \"segment.h\"\nint main(void) { printf(\"%zu\\n\", sizeof(shm_value)); return 0; }\n",
            &[],
        );
        let expected = if std::ptr::eq(header, &ring_header) {
            size_of::<Tick>()
        } else {
            12
        };
        assert_eq!(out.trim(), expected.to_string(), "{header}");
    }
}

#[test]
fn inspect_shows_the_schema_and_the_value_field_by_field() {
    let object = Shared::<Tick>::options()
        .create(Location::Private, TICK)
        .unwrap();
    let id = private_id(object.location());
    let _remove = RemoveSysv(id);
    let text = run_ok(&["inspect", &id.to_string()]);
    for expected in [
        "schema: fingerprint ",
        "  #[repr(C, align(32))]",
        "  struct Tick { // size 128, align 32",
        "      /* 80 */ side: Side, // enum u8",
        "value:",
        "      price: 101.25,",
        "      side: Sell (2),",
        "      tail: [0, 0, 0, 9],",
        "      venue: [88, 78, 65, 83, 68, 65, 81],",
        "              price: 7,",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(expected)),
            "{expected:?} missing:\n{text}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(&["inspect", &id.to_string(), "--json"])).unwrap();
    let schema = json["ours"]["schema"].as_str().expect("schema in JSON");
    assert!(schema.contains("struct Level {"), "{schema}");
    assert_eq!(
        json["ours"]["schema_fingerprint"].as_str(),
        Some(format!("{:#018x}", Tick::fingerprint()).as_str())
    );
}

/// A bidi override or zero-width character in a name from the segment is
/// shown escaped, never passed to the terminal.
#[test]
fn format_characters_in_names_are_escaped() {
    let object = Shared::<u64>::options()
        .type_name("evil\u{202e}txt\u{200b}")
        .create(Location::Private, 1)
        .unwrap();
    let id = private_id(object.location());
    let _remove = RemoveSysv(id);
    let text = run_ok(&["inspect", &id.to_string()]);
    assert!(
        !text.contains('\u{202e}') && !text.contains('\u{200b}'),
        "{text}"
    );
    assert!(text.contains("evil\\u{202e}txt\\u{200b}"), "{text}");
}
