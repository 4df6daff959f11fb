//! Who uses a POSIX shared-memory object, read from `/proc` without any
//! cooperation from the users: the processes that map it (a line of
//! `/proc/<pid>/maps`) and the processes that hold it open (a symlink in
//! `/proc/<pid>/fd/`). And whether /proc confirms that a header's creator is
//! dead.
//!
//! An object is told by its identity, the device and inode of its file under
//! `/dev/shm`, not by its path. A mapping of an object that was unlinked
//! since shows in `maps` as `/dev/shm/<name> (deleted)`; it has the inode of
//! that old object, not that of an object made later under the same name, so
//! it is never counted for the current one (and an object whose name itself
//! ends in ` (deleted)` is not mistaken for an unlinked one).
//!
//! The process running the scan is never counted: `shm` maps every object it
//! reads a header from. Processes that exit while the scan runs are skipped
//! (they use nothing any more); processes whose entries cannot be read for
//! another reason (permission) are recorded, as they may use the objects too:
//! see [`Scan::complete`] and, for `rm --stale`, [`Scan::removal_gap`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use shm_sys::posix::PosixSegment;
use shm_typed::format::CreatorRecord;
use shm_typed::Description;

use crate::segments::printable;

/// Where the kernel shows processes.
const PROC: &str = "/proc";

/// The directory POSIX objects live in, as `/proc/<pid>/fd` links show it.
const SHM_DIR: &str = "/dev/shm";

/// A file's identity: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    major: u32,
    minor: u32,
    inode: u64,
}

impl FileId {
    /// The identity of the file open as `fd` (`fstat`).
    pub(crate) fn of_fd(fd: impl AsFd) -> io::Result<FileId> {
        let stat = rustix::fs::fstat(fd)?;
        Ok(FileId::from_dev(stat.st_dev, stat.st_ino))
    }

    fn from_dev(dev: u64, inode: u64) -> FileId {
        FileId {
            major: rustix::fs::major(dev),
            minor: rustix::fs::minor(dev),
            inode,
        }
    }
}

/// The processes that use one object. A process is in both sets when it
/// maps the object and holds it open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Users {
    /// Processes with at least one mapping of the object (`/proc/<pid>/maps`).
    pub(crate) mapping: BTreeSet<u32>,
    /// Processes with at least one descriptor open on it (`/proc/<pid>/fd`).
    pub(crate) open: BTreeSet<u32>,
}

impl Users {
    /// Processes that map the object or hold it open, each counted once.
    pub(crate) fn processes(&self) -> usize {
        self.mapping.union(&self.open).count()
    }
}

/// What one look through `/proc` found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    found: HashMap<FileId, Users>,
    /// Processes that exist but whose maps or descriptors could not be read
    /// (permission): they may map or hold any of the objects.
    unreadable: BTreeSet<u32>,
    /// Why the scan may have missed processes altogether.
    blind: Option<String>,
}

impl Scan {
    /// The processes other than this one found using the object `file`.
    pub(crate) fn users(&self, file: FileId) -> Users {
        self.found.get(&file).cloned().unwrap_or_default()
    }

    /// Whether every process was looked at, so that the counts are exact (as
    /// of the scan); otherwise they are lower bounds.
    pub(crate) fn complete(&self) -> bool {
        self.unreadable.is_empty() && self.blind.is_none()
    }

    /// Why the counts may be low, or `None` when the scan is complete.
    pub(crate) fn gap(&self) -> Option<String> {
        if let Some(why) = &self.blind {
            return Some(why.clone());
        }
        let first = self.unreadable.first()?;
        Some(format!(
            "could not read /proc/<pid>/maps or /proc/<pid>/fd of {} process(es) (the first: pid \
             {first})",
            self.unreadable.len()
        ))
    }

    /// Why the scan cannot tell that an object nobody was seen using is
    /// unused, or `None` when it can: processes hidden altogether, or (when
    /// not root) processes whose entries could not be read. Root reads every
    /// process's entries but those walled off on purpose (a security module,
    /// a sandbox's init); those are taken not to use our objects.
    pub(crate) fn removal_gap(&self) -> Option<String> {
        if self.blind.is_some() || !rustix::process::geteuid().is_root() {
            return self.gap();
        }
        None
    }
}

/// Looks through every process but this one for mappings of and descriptors
/// open on the files in `wanted`.
pub(crate) fn scan(wanted: &HashSet<FileId>) -> Scan {
    scan_excluding(wanted, Some(own_pid()))
}

/// This process's id as the mounted `/proc` numbers it (it can belong to
/// another pid namespace than ours).
fn own_pid() -> u32 {
    std::fs::read_link(Path::new(PROC).join("self"))
        .ok()
        .and_then(|link| link.to_str()?.parse().ok())
        .unwrap_or_else(std::process::id)
}

fn scan_excluding(wanted: &HashSet<FileId>, exclude: Option<u32>) -> Scan {
    let mut scan = Scan::default();
    if wanted.is_empty() {
        return scan;
    }
    let entries = match std::fs::read_dir(PROC) {
        Ok(entries) => entries,
        Err(error) => {
            scan.blind = Some(format!("cannot list {PROC}: {error}"));
            return scan;
        }
    };
    let prefixes = shm_prefixes();
    let mut saw_init = false;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue; // not a process: /proc/meminfo, /proc/self, ...
        };
        saw_init |= pid == 1;
        if Some(pid) != exclude {
            scan_process(&entry.path(), pid, wanted, &prefixes, &mut scan);
        }
    }
    // Every pid namespace has a pid 1 while it lives; a /proc mounted with
    // hidepid=invisible hides the processes of other users, init among them.
    if !saw_init && scan.blind.is_none() {
        scan.blind = Some(format!(
            "{PROC} hides processes of other users (hidepid); root sees them all"
        ));
    }
    scan
}

/// How `/proc/<pid>/fd` links to POSIX objects start: `/dev/shm/`, and the
/// real directory's path if `/dev/shm` is a symlink (to `/run/shm`, say).
fn shm_prefixes() -> Vec<Vec<u8>> {
    let mut prefixes = vec![format!("{SHM_DIR}/").into_bytes()];
    if let Ok(real) = std::fs::canonicalize(SHM_DIR) {
        let mut real = real.into_os_string().into_vec();
        real.push(b'/');
        if !prefixes.contains(&real) {
            prefixes.push(real);
        }
    }
    prefixes
}

/// Whether a failed read of a process's entry means that the process (or
/// the descriptor) is gone, rather than that we may not look.
fn gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ESRCH)
}

/// Records what process `pid` (its /proc directory `dir`) maps and holds open.
fn scan_process(
    dir: &Path,
    pid: u32,
    wanted: &HashSet<FileId>,
    prefixes: &[Vec<u8>],
    scan: &mut Scan,
) {
    let maps = match std::fs::read(dir.join("maps")) {
        Ok(maps) => maps,
        Err(error) if gone(&error) => return,
        Err(_) => {
            scan.unreadable.insert(pid);
            return;
        }
    };
    // A process whose main thread has exited while other threads run shows
    // no maps and no descriptors under its own id (it is a zombie); a live
    // thread's directory shows the process's.
    let (dir, maps) = if maps.is_empty() {
        live_thread_view(dir, pid).unwrap_or((dir.to_path_buf(), maps))
    } else {
        (dir.to_path_buf(), maps)
    };
    for line in maps.split(|&byte| byte == b'\n') {
        if let Some(file) = parse_maps_line(line).filter(|file| wanted.contains(file)) {
            scan.found.entry(file).or_default().mapping.insert(pid);
        }
    }
    let descriptors = match std::fs::read_dir(dir.join("fd")) {
        Ok(descriptors) => descriptors,
        Err(error) if gone(&error) => return,
        Err(_) => {
            scan.unreadable.insert(pid);
            return;
        }
    };
    for descriptor in descriptors.flatten() {
        let link = descriptor.path();
        // The link's text first: stat follows the link into the file's own
        // file system (a hung FUSE mount would hang us), so only files under
        // /dev/shm are looked at.
        let Ok(target) = std::fs::read_link(&link) else {
            continue; // closed meanwhile
        };
        let target = target.as_os_str().as_bytes();
        if !prefixes.iter().any(|prefix| target.starts_with(prefix)) {
            continue;
        }
        match std::fs::metadata(&link) {
            Ok(metadata) => {
                let file = FileId::from_dev(metadata.dev(), metadata.ino());
                if wanted.contains(&file) {
                    scan.found.entry(file).or_default().open.insert(pid);
                }
            }
            Err(error) if gone(&error) => {} // closed meanwhile
            Err(_) => {
                scan.unreadable.insert(pid);
            }
        }
    }
}

/// The directory and maps of a thread of process `pid` other than its main
/// one that shows mappings, if there is one.
fn live_thread_view(dir: &Path, pid: u32) -> Option<(PathBuf, Vec<u8>)> {
    for task in std::fs::read_dir(dir.join("task")).ok()?.flatten() {
        if task.file_name().to_str() == Some(pid.to_string().as_str()) {
            continue;
        }
        let task_dir = task.path();
        if let Ok(maps) = std::fs::read(task_dir.join("maps")) {
            if !maps.is_empty() {
                return Some((task_dir, maps));
            }
        }
    }
    None
}

/// The file a line of `/proc/<pid>/maps` maps, `None` for anonymous memory
/// and anything malformed. A line is `start-end perms offset major:minor
/// inode [path]`, the device in hex and the inode in decimal.
fn parse_maps_line(line: &[u8]) -> Option<FileId> {
    // The five fields before the path are ASCII and take under 100 bytes; a
    // path may hold anything, so only the UTF-8 part of a prefix is decoded.
    let prefix = &line[..line.len().min(128)];
    let text = match std::str::from_utf8(prefix) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&prefix[..error.valid_up_to()]).ok()?,
    };
    let mut fields = text.split_ascii_whitespace();
    let _range = fields.next()?;
    let _perms = fields.next()?;
    let _offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode: u64 = fields.next()?.parse().ok()?;
    if inode == 0 {
        return None;
    }
    Some(FileId {
        major: u32::from_str_radix(major, 16).ok()?,
        minor: u32::from_str_radix(minor, 16).ok()?,
        inode,
    })
}

/// The state letter and start time (clock ticks since boot) in the text of
/// `/proc/<pid>/stat`. The command name, in parentheses, may hold anything,
/// `)` and spaces too, so the fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is the state; field 22 the start time.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

/// This process's pid namespace (the inode of `/proc/self/ns/pid`).
fn own_pid_namespace() -> Option<u64> {
    std::fs::metadata(Path::new(PROC).join("self/ns/pid"))
        .ok()
        .map(|metadata| metadata.ino())
}

/// Whether the creator a header records is confirmed dead: by its kernel
/// token, in any pid namespace; else by /proc, if it was made in our pid
/// namespace and there is no process with its pid, or only a zombie without
/// live threads, or one that started at another time (the pid was reused).
/// Anything that cannot be read or judged (another pid namespace without a
/// readable token, an unreadable entry) is not confirmed.
pub(crate) fn creator_confirmed_dead(creator: &CreatorRecord) -> bool {
    if creator.pid_namespace == 0 || own_pid_namespace() != Some(creator.pid_namespace) {
        // Another pid namespace: only its kernel token can tell.
        return shm_typed::creator_token_verdict(creator) == Some(true);
    }
    let Some(pid) = i32::try_from(creator.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    let no_such_process =
        || rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH);
    if no_such_process() {
        return true;
    }
    let dir = Path::new(PROC).join(creator.pid.to_string());
    let stat = match std::fs::read_to_string(dir.join("stat")) {
        Ok(stat) => stat,
        // Exited since the kill test, or hidden from us (hidepid): ask again.
        Err(error) if gone(&error) => return no_such_process(),
        Err(_) => return false,
    };
    match parse_stat(&stat) {
        Some(('Z' | 'X' | 'x', _)) => {
            // A zombie main thread with live threads is a live process.
            std::fs::read_dir(dir.join("task")).is_ok_and(|tasks| tasks.flatten().count() <= 1)
        }
        Some((_, start)) => creator.start_time != 0 && start != creator.start_time,
        None => false,
    }
}

/// One of our POSIX objects, as read a moment ago.
#[derive(Debug)]
pub(crate) struct PosixObject {
    /// The name, with its leading `/`.
    pub(crate) name: String,
    /// The size in bytes.
    pub(crate) size: usize,
    /// The file's identity, by which `/proc` shows who uses it; `None` if
    /// `fstat` failed.
    pub(crate) file: Option<FileId>,
    pub(crate) description: Description,
}

/// Who uses each of `objects` (one scan of `/proc`, not counting this
/// process), in the same order.
pub(crate) fn posix_users(objects: &[PosixObject]) -> (Vec<PosixUsers>, Scan) {
    let wanted = objects.iter().filter_map(|object| object.file).collect();
    let found = scan(&wanted);
    let counts = objects
        .iter()
        .map(|object| match object.file {
            Some(file) => {
                let users = found.users(file);
                PosixUsers {
                    users: users.processes(),
                    mapped_by: users.mapping.len(),
                    open_by: users.open.len(),
                    complete: found.complete(),
                }
            }
            None => PosixUsers::default(),
        })
        .collect();
    (counts, found)
}

/// How many processes other than this `shm` use a POSIX object.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PosixUsers {
    /// Processes that map it or hold it open, each counted once.
    pub(crate) users: usize,
    /// Processes that map it.
    pub(crate) mapped_by: usize,
    /// Processes that hold a descriptor open on it.
    pub(crate) open_by: usize,
    /// Whether every process could be looked at; if not, the counts are
    /// lower bounds.
    pub(crate) complete: bool,
}

/// `shm rm --stale` for POSIX objects. `objects` are ours (each starts with
/// our header); one is unlinked when no process but this one maps it or
/// holds it open and /proc confirms that the creator its header records is
/// dead. That is checked on one scan for all of them, and again for each
/// just before its unlink (`look_again` reads an object anew). Objects kept
/// although they looked stale are printed with the reason, those removed
/// with their names. Returns how many were removed.
pub(crate) fn remove_stale_posix(
    objects: &[PosixObject],
    look_again: impl Fn(&str) -> Option<PosixObject>,
) -> Result<usize, String> {
    let candidates: Vec<&PosixObject> = objects
        .iter()
        .filter(|object| !object.description.creator_alive)
        .collect();
    let wanted = candidates.iter().filter_map(|object| object.file).collect();
    let found = scan(&wanted);
    if let (None, Some(gap)) = (found.removal_gap(), found.gap()) {
        eprintln!("shm: note: {gap}; as root, those are taken not to use our POSIX objects");
    }
    let mut removed = 0;
    for object in candidates {
        let name = printable(&object.name);
        let Some(file) = object.file else {
            say!("kept POSIX object {name}: cannot tell who uses it (fstat failed)");
            continue;
        };
        if found.users(file).processes() > 0 {
            continue; // in use: not stale
        }
        if let Err(why) = stale_now(object, file, &found) {
            say!("kept POSIX object {name}: {why}");
            continue;
        }
        if let Err(why) = look_again(&object.name)
            .ok_or_else(|| "it is gone, or no longer ours".to_owned())
            .and_then(|again| {
                if again.file == Some(file) {
                    stale_now(&again, file, &scan(&HashSet::from([file])))
                } else {
                    Err("its name now names another object".to_owned())
                }
            })
        {
            say!("kept POSIX object {name}: looked at again, {why}");
            continue;
        }
        // A race remains between that last look and the unlink: a process
        // may shm_open the name in between (it keeps a working object that
        // no longer has a name, which later openers will not find), or the
        // object may be unlinked and a new one made under the name, which is
        // then the one removed. Nothing in Linux unlinks a name only if it
        // still names a given inode.
        match PosixSegment::unlink(&object.name) {
            Ok(()) => {
                say!("removed stale POSIX object {name}");
                removed += 1;
            }
            Err(shm_sys::Error::NotFound { .. }) => {
                say!("kept POSIX object {name}: someone else removed it meanwhile");
            }
            Err(error) => return Err(format!("removing stale POSIX object {name}: {error}")),
        }
    }
    Ok(removed)
}

/// Whether `object` (the file `file`), known to be ours with a creator that
/// `describe` took for gone, counts as stale by the scan `found`: `Ok`, or
/// why not.
fn stale_now(object: &PosixObject, file: FileId, found: &Scan) -> Result<(), String> {
    if let Some(gap) = found.removal_gap() {
        return Err(format!("cannot tell who uses it: {gap}"));
    }
    let users = found.users(file);
    if users.processes() > 0 {
        return Err(format!("it is in use by {} process(es)", users.processes()));
    }
    let creator = &object.description.header.creator;
    if object.description.creator_alive || !creator_confirmed_dead(creator) {
        return Err(format!(
            "cannot confirm that its creator, pid {}, is dead (it may be alive, or in another \
             pid namespace)",
            creator.pid
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_are_parsed_or_refused() {
        let line = b"7f1c2a000000-7f1c2a001000 r--s 00000000 00:1a 1234 /dev/shm/a b (deleted)";
        assert_eq!(
            parse_maps_line(line),
            Some(FileId {
                major: 0,
                minor: 0x1a,
                inode: 1234
            })
        );
        let line = b"55d0c0a00000-55d0c0a21000 r-xp 00000000 fd:01 99      /usr/bin/x";
        assert_eq!(
            parse_maps_line(line),
            Some(FileId {
                major: 0xfd,
                minor: 1,
                inode: 99
            })
        );
        // Anonymous memory, a heap, garbage: no file.
        assert_eq!(
            parse_maps_line(b"7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]"),
            None
        );
        for junk in [
            &b""[..],
            b"x",
            b"a b c d e",
            b"a b c 00:zz 5",
            b"a b c 00:01 -5",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_maps_line(junk), None, "{junk:?}");
        }
        // A path that is not UTF-8, and long: the fields before it still count.
        let mut line = b"1-2 rw-s 0 00:05 77 /dev/shm/".to_vec();
        line.extend([0xff; 300]);
        assert_eq!(parse_maps_line(&line).map(|file| file.inode), Some(77));
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 \
                    1000 10 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(('S', 123456)));
        assert_eq!(parse_stat("42 (x) Z"), None);
        assert_eq!(parse_stat("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(matches!(parse_stat(&own), Some((_, start)) if start > 0));
    }

    /// Unlinks the object when dropped, also when the test fails.
    struct Unlink(String);

    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = PosixSegment::unlink(&self.0);
        }
    }

    #[test]
    fn a_scan_finds_mappings_and_descriptors_but_not_those_of_an_unlinked_object() {
        let name = format!("/shm-cli-users-unit-{}", std::process::id());
        let _unlink = Unlink(name.clone());
        let object = PosixSegment::create(&name, 4096).unwrap();
        let file = FileId::of_fd(&object).unwrap();
        let wanted = HashSet::from([file]);
        let me = own_pid();

        // Held open, not mapped.
        let users = scan_excluding(&wanted, None).users(file);
        assert!(users.open.contains(&me), "{users:?}");
        assert!(!users.mapping.contains(&me), "{users:?}");
        // ... and never counted when excluded.
        assert_eq!(
            scan_excluding(&wanted, Some(me)).users(file),
            Users::default()
        );

        // Mapped, and the descriptor closed.
        let mapping = object.map().unwrap();
        drop(object);
        let users = scan_excluding(&wanted, None).users(file);
        assert_eq!(users.mapping, BTreeSet::from([me]), "{users:?}");
        assert!(!users.open.contains(&me), "{users:?}");
        assert_eq!(users.processes(), 1);

        // Unlinked (maps now says "(deleted)") and a new object under the
        // same name: the old mapping is not the new object's.
        PosixSegment::unlink(&name).unwrap();
        let again = PosixSegment::create(&name, 4096).unwrap();
        let new_file = FileId::of_fd(&again).unwrap();
        assert_ne!(new_file, file);
        drop(again);
        let scan = scan_excluding(&HashSet::from([file, new_file]), None);
        assert!(scan.users(file).mapping.contains(&me));
        assert_eq!(scan.users(new_file), Users::default());
        drop(mapping);
    }

    #[test]
    fn creators_are_judged_conservatively() {
        let own_namespace = own_pid_namespace().unwrap();
        let start = parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap())
            .unwrap()
            .1;
        let creator = |pid, start_time, pid_namespace| CreatorRecord {
            pid,
            uid: 0,
            start_time,
            pid_namespace,
            token: 0,
            registry: 0,
            registry_ctime: 0,
        };
        let me = std::process::id();
        assert!(!creator_confirmed_dead(&creator(me, start, own_namespace)));
        assert!(!creator_confirmed_dead(&creator(me, 0, own_namespace)));
        // The pid reused by another process.
        assert!(creator_confirmed_dead(&creator(
            me,
            start + 1,
            own_namespace
        )));
        // Another pid namespace, or none recorded: cannot judge.
        assert!(!creator_confirmed_dead(&creator(
            me,
            start + 1,
            own_namespace + 1
        )));
        assert!(!creator_confirmed_dead(&creator(me, start + 1, 0)));
        // No such pid (above pid_max), and pids that cannot be processes.
        assert!(creator_confirmed_dead(&creator(1 << 30, 5, own_namespace)));
        assert!(!creator_confirmed_dead(&creator(0, 5, own_namespace)));
        assert!(!creator_confirmed_dead(&creator(
            u32::MAX,
            5,
            own_namespace
        )));
    }
}
