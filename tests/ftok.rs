//! `Key::ftok` agrees with glibc's `ftok` on generated paths and project ids.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use shm_sys::{Error, Key};

fn libc_ftok(path: &Path, project: i32) -> i32 {
    let c_path = CString::new(path.to_str().expect("utf-8 path")).expect("no NUL");
    // SAFETY: a valid NUL-terminated path; ftok only stats it.
    unsafe { libc::ftok(c_path.as_ptr(), project) }
}

/// Paths on several devices (the root file system, procfs, sysfs, devtmpfs,
/// tmpfs), so the device byte varies too.
const SYSTEM_PATHS: &[&str] = &[
    "/",
    "/proc",
    "/proc/self",
    "/sys",
    "/sys/kernel",
    "/dev",
    "/dev/null",
    "/dev/shm",
    "/tmp",
    "/etc",
    "/usr",
    "/usr/bin",
];

fn check(path: &Path, project: i32) -> Result<(), TestCaseError> {
    let expected = libc_ftok(path, project);
    match Key::ftok(path, project) {
        Ok(key) => prop_assert_eq!(key.raw(), expected, "path {:?} project {}", path, project),
        Err(error) => {
            prop_assert_eq!(expected, -1, "libc found {:?}, we failed: {}", path, error);
            prop_assert!(matches!(error, Error::NotFound { .. }), "{:?}", error);
        }
    }
    Ok(())
}

/// Fresh files (new inodes each), system paths on other devices, and any project
/// id at all: 0, above 255, negative. 1000 cases.
#[test]
fn ftok_matches_glibc_on_1000_generated_pairs() {
    let dir = tempfile::tempdir().expect("tempdir"); // removed on drop
    let strategy = (
        "[a-z]{1,12}",
        prop::sample::select(SYSTEM_PATHS),
        any::<bool>(),
        prop_oneof![Just(0), 1..=255i32, 256..=65535i32, any::<i32>()],
    );
    // At least 1000; .ci/long asks for more through PROPTEST_CASES.
    let wanted = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(1000u32)
        .max(1000);
    let mut runner = TestRunner::new(ProptestConfig::with_cases(wanted));
    let cases = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(file, system, use_system, project)| {
            cases.set(cases.get() + 1);
            let path: PathBuf = if use_system {
                PathBuf::from(system)
            } else {
                let path = dir.path().join(file);
                std::fs::write(&path, b"").expect("temp file");
                path
            };
            check(&path, project)
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert!(cases.get() >= wanted, "ran {} cases", cases.get());
}

#[test]
fn missing_path_is_an_error_on_both_sides() {
    let missing = Path::new("/no/such/dir/for/ftok");
    assert_eq!(libc_ftok(missing, 1), -1);
    let err = Key::ftok(missing, 1).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("/no/such/dir/for/ftok"), "{err}");
}

#[test]
fn project_ids_zero_and_above_255_match_glibc() {
    let dir = tempfile::tempdir().expect("tempdir");
    for project in [0, 1, 255, 256, 257, 511, 0x1234_5678, -1, i32::MIN] {
        let expected = libc_ftok(dir.path(), project);
        assert_eq!(
            Key::ftok(dir.path(), project).unwrap().raw(),
            expected,
            "{project}"
        );
    }
}
