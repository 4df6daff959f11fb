//! A second, separately compiled program for the schema tests
//! (tests/schema.rs): it defines its own `Tick` in several versions, each
//! derived with `ShmType` in a module of its own, and opens a segment the
//! test (another crate, another process) made with its `Tick`.
//!
//! `shm-schema-peer KIND VARIANT ID`: KIND is `shared`, `shared-read-only`,
//! `spsc`, `spinning`, `mpmc`, or `store-object`, `store-spsc`, `store-mpmc`
//! (entry "tick" of the store); VARIANT names the module below; ID is the
//! System V segment id. Prints `ok a=.. b=..` (what it read) or `err
//! <error>`, and exits 0 either way (1 on bad arguments).

use std::process::ExitCode;

use bytemuck::{Pod, Zeroable};
use shm_typed::{Location, MpmcRing, Shared, SpinningSpscRing, SpscRing, Store};

/// Ring capacity the tests use.
const CAPACITY: u64 = 8;

macro_rules! tick {
    ($module:ident, $(#[$meta:meta])* { $($field:ident: $ty:ty),* $(,)? }) => {
        mod $module {
            use super::*;
            #[derive(Clone, Copy, Debug, Pod, Zeroable, shm_typed::ShmType)]
            $(#[$meta])*
            #[repr(C)]
            pub struct Tick { $(pub $field: $ty),* }

            impl Tick {
                pub fn describe(&self) -> String {
                    let mut out = Vec::new();
                    $(out.push(format!("{}={}", stringify!($field), self.$field));)*
                    out.join(" ")
                }
            }
        }
    };
}

// The writer's (the test's) Tick is `{ a: u32, b: u32, c: f32, d: u32 }`,
// extensible.
tick!(same, #[shm(extensible)] { a: u32, b: u32, c: f32, d: u32 });
tick!(swapped, #[shm(extensible)] { b: u32, a: u32, c: f32, d: u32 });
tick!(renamed, #[shm(extensible)] { a: u32, bee: u32, c: f32, d: u32 });
tick!(retyped, #[shm(extensible)] { a: u32, b: f32, c: f32, d: u32 });
tick!(reordered, #[shm(extensible)] { c: f32, a: u32, b: u32, d: u32 });
// An older version: the writer's first three fields.
tick!(prefix, #[shm(extensible)] { a: u32, b: u32, c: f32 });
// A newer version than the writer's: one more field.
tick!(extended, #[shm(extensible)] { a: u32, b: u32, c: f32, d: u32, e: u32 });

fn open<T: Pod>(kind: &str, id: i32, describe: fn(&T) -> String) -> Result<String, String> {
    let location = Location::Id(id);
    let text = |error: shm_typed::Error| error.to_string();
    let value = match kind {
        "shared" => Shared::<T>::open(location)
            .map_err(text)?
            .load()
            .map_err(text)?,
        "shared-read-only" => Shared::<T>::open_read_only(location)
            .map_err(text)?
            .load()
            .map_err(text)?,
        "spsc" => pop(&SpscRing::<T>::open(location, CAPACITY).map_err(text)?)?,
        "spinning" => {
            let ring = SpinningSpscRing::<T>::open_spinning(location, CAPACITY).map_err(text)?;
            let value = ring
                .consumer()
                .map_err(text)?
                .pop()
                .map_err(|e| e.to_string())?;
            value.ok_or("empty")?
        }
        "mpmc" => MpmcRing::<T>::open(location, CAPACITY)
            .map_err(text)?
            .pop()
            .map_err(|e| e.to_string())?
            .ok_or("empty")?,
        "store-object" => Store::open(location)
            .map_err(text)?
            .get_object::<T>("tick")
            .map_err(text)?
            .load()
            .map_err(text)?,
        "store-spsc" => pop(&Store::open(location)
            .map_err(text)?
            .get_spsc::<T>("tick", CAPACITY)
            .map_err(text)?)?,
        "store-mpmc" => Store::open(location)
            .map_err(text)?
            .get_mpmc::<T>("tick", CAPACITY)
            .map_err(text)?
            .pop()
            .map_err(|e| e.to_string())?
            .ok_or("empty")?,
        other => return Err(format!("unknown kind {other}")),
    };
    Ok(describe(&value))
}

fn pop<T: Pod>(ring: &SpscRing<T>) -> Result<T, String> {
    let value = ring
        .consumer()
        .map_err(|e| e.to_string())?
        .pop()
        .map_err(|e| e.to_string())?;
    value.ok_or_else(|| "empty".to_owned())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, variant, id] = &args[..] else {
        eprintln!("usage: shm-schema-peer KIND VARIANT ID");
        return ExitCode::from(1);
    };
    let Ok(id) = id.parse::<i32>() else {
        eprintln!("bad id {id:?}");
        return ExitCode::from(1);
    };
    let result = match variant.as_str() {
        "same" => open(kind, id, same::Tick::describe),
        "swapped" => open(kind, id, swapped::Tick::describe),
        "renamed" => open(kind, id, renamed::Tick::describe),
        "retyped" => open(kind, id, retyped::Tick::describe),
        "reordered" => open(kind, id, reordered::Tick::describe),
        "prefix" => open(kind, id, prefix::Tick::describe),
        "extended" => open(kind, id, extended::Tick::describe),
        other => {
            eprintln!("unknown variant {other}");
            return ExitCode::from(1);
        }
    };
    match result {
        Ok(read) => println!("ok {read}"),
        Err(error) => println!("err {error}"),
    }
    ExitCode::SUCCESS
}
