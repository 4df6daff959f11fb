//! Fuzz target `rings`: see `drive::rings` in fuzz/drive.rs.
#![no_main]

#[path = "../drive.rs"]
mod drive;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    drive::rings(data);
});
