//! `shm ls`, `shm inspect` and `shm rm`, and the target syntax all commands share.

use std::error::Error;
use std::time::SystemTime;

use serde::Serialize;
use shm_sys::posix::PosixSegment;
use shm_sys::sysv::{self, Segment, SegmentInfo};
use shm_sys::Key;
use shm_typed::format::{Kind, State};
use shm_typed::schema::{render_rust, render_value};
use shm_typed::{
    c_header, describe, describe_unready, object_value, Description, EntryInfo, ObjectValue,
    Region, Unready,
};

use crate::users::{posix_users, FileId, PosixObject};

pub(crate) type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

/// What a command line names: `0x5eed` (key), `42` (id), `path:proj` (ftok),
/// `/name` (POSIX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A System V key.
    Key(Key),
    /// A System V id.
    Id(i32),
    /// A POSIX shm name.
    Posix(String),
}

/// Parses a target; ftok paths become their key.
pub fn parse_target(text: &str) -> Result<Target> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        let raw = u32::from_str_radix(hex, 16).map_err(|_| format!("bad key {text:?}"))?;
        return Ok(Target::Key(Key::new(raw as i32)));
    }
    if let Ok(id) = text.parse::<i32>() {
        return Ok(Target::Id(id));
    }
    if let Some((path, project)) = text.rsplit_once(':') {
        let project: i32 = project
            .parse()
            .map_err(|_| format!("bad project id in {text:?}"))?;
        return Ok(Target::Key(Key::ftok(path, project)?));
    }
    if text.starts_with('/') {
        return Ok(Target::Posix(text.to_owned()));
    }
    Err(format!("{text:?} is not a key (0x...), an id, path:proj or /posix-name").into())
}

fn segment_of(target: &Target) -> Result<Segment> {
    Ok(match target {
        Target::Key(key) => Segment::open_read_only(*key)?,
        Target::Id(id) => Segment::from_id(*id)?,
        Target::Posix(name) => return Err(format!("{name} is a POSIX object, not System V").into()),
    })
}

/// A store's entries, read from the store's region (mapped read-only for a
/// moment).
fn store_entries(region: Region) -> std::result::Result<Vec<EntryInfo>, String> {
    shm_typed::store_entries(region).map_err(|error| error.to_string())
}

/// A store's entries, printed.
fn print_store_entries(entries: &std::result::Result<Vec<EntryInfo>, String>) {
    match entries {
        Ok(entries) => {
            say!("entries: {}", entries.len());
            for entry in entries {
                let capacity = if entry.capacity > 0 {
                    format!(", capacity {}", entry.capacity)
                } else {
                    String::new()
                };
                say!(
                    "  {:<24} {:<10} `{}` ({} bytes{capacity})",
                    printable(&entry.name),
                    entry.kind.name(),
                    printable(&entry.type_name),
                    entry.size
                );
            }
        }
        Err(error) => say!("entries: unreadable: {}", printable(error)),
    }
}

/// Our header, if the segment has one (attached read-only for a moment).
fn describe_sysv(id: i32) -> Option<Description> {
    let mapping = Segment::from_id(id).ok()?.attach_read_only().ok()?;
    describe(&Region::from_mapping(mapping))
}

/// For a segment without a ready header of ours: whether it is one a creator
/// of ours began (or blank), and whether that creator verifiably died.
fn describe_sysv_unready(info: &SegmentInfo) -> Option<Unready> {
    let mapping = Segment::from_id(info.id).ok()?.attach_read_only().ok()?;
    describe_unready(&Region::from_mapping(mapping), Some(info.cpid))
}

/// The state column for such a segment: its state word, and its creator.
fn unready_state(unready: &Unready) -> String {
    let creator = match (unready.creator, unready.creator_dead) {
        (Some(pid), true) => format!(", creator {pid} dead"),
        (Some(pid), false) => format!(", creator {pid}"),
        (None, _) => String::new(),
    };
    format!("{}{creator}", unready.state.name())
}

/// `ls --json`'s view of a segment that is not ready.
#[derive(Debug, Serialize)]
struct UnreadyJson {
    /// `uninitialised` or `initialising`.
    state: &'static str,
    /// Whether every byte is zero.
    blank: bool,
    creator: Option<u32>,
    /// Whether the creator verifiably died: the segment will never be ready.
    creator_dead: bool,
}

impl UnreadyJson {
    fn of(unready: &Unready) -> UnreadyJson {
        UnreadyJson {
            state: unready.state.name(),
            blank: unready.blank,
            creator: unready.creator,
            creator_dead: unready.creator_dead,
        }
    }
}

/// Our header, if the POSIX object `name` has one (mapped read-only for a
/// moment, and unmapped again before this returns).
pub(crate) fn describe_posix(name: &str) -> Option<PosixObject> {
    let object = PosixSegment::open_read_only(name).ok()?;
    let size = object.size().ok()?;
    let file = FileId::of_fd(&object).ok();
    let mapping = object.map_read_only().ok()?;
    Some(PosixObject {
        name: object.name().to_owned(),
        size,
        file,
        description: describe(&Region::from_mapping(mapping))?,
    })
}

/// Our POSIX objects: names in /dev/shm whose contents start with our header.
pub(crate) fn our_posix_objects() -> Vec<PosixObject> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = format!("/{}", entry.file_name().to_string_lossy());
        if let Some(object) = describe_posix(&name) {
            found.push(object);
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

fn kind_name(description: &Description) -> String {
    description.kind.map_or_else(
        || format!("kind {}", description.header.kind),
        |kind| kind.name().to_owned(),
    )
}

fn state_name(state: u32) -> &'static str {
    match state {
        0 => "uninitialised",
        1 => "initialising",
        2 => "ready",
        3 => "failed",
        _ => "corrupt",
    }
}

fn lock_text(description: &Description) -> String {
    match (description.lock_holder, description.lock_holder_dead) {
        (Some(tid), Some(true)) => format!("held by {tid} (dead)"),
        (Some(tid), _) => format!("held by {tid}"),
        (None, _) if description.poisoned => "poisoned".to_owned(),
        (None, _) => "free".to_owned(),
    }
}

/// `len/capacity` for rings of every kind, `corrupt` for a ring whose indices
/// are impossible, `None` for what is not a ring. Which kinds are rings, and
/// how each one's fill is read, is decided by [`describe`], not here.
fn fill(description: &Description) -> Option<String> {
    let capacity = description.ring_capacity?;
    Some(match description.ring_len {
        Some(len) => format!("{len}/{capacity}"),
        None => "corrupt".to_owned(),
    })
}

/// Text from a segment or the file system, made safe for a terminal and for
/// the table: control characters (a newline in a type name could forge a
/// row) are shown escaped. JSON output escapes them itself.
pub(crate) fn printable(text: &str) -> String {
    // What Rust's debug escaping escapes (controls, and characters that are
    // not printable: bidi overrides, zero-width and format characters, line
    // separators), except the quotes and backslash it escapes for strings.
    let escaped = |c: char| c.escape_debug().len() > 1 && !matches!(c, '"' | '\'' | '\\');
    if !text.chars().any(escaped) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if escaped(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Our header, decoded, as `shm ls --json` and `shm inspect --json` print it
/// (under `"ours"`).
#[derive(Debug, Serialize)]
struct OursJson {
    kind: String,
    #[serde(rename = "type")]
    type_name: String,
    element_size: u32,
    align: u32,
    capacity: u64,
    format_version: u32,
    version_supported: bool,
    state: &'static str,
    creator_pid: u32,
    creator_uid: u32,
    creator_alive: bool,
    lock_holder: Option<u32>,
    lock_holder_dead: Option<bool>,
    poisoned: bool,
    ring_len: Option<u64>,
    fill: Option<String>,
    /// The schema's fingerprint (`"0x..."`); `null` without a schema.
    schema_fingerprint: Option<String>,
    /// The stored schema as Rust-like declarations with offsets.
    schema: Option<String>,
    /// What is wrong with a schema record or block that does not check out.
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_error: Option<String>,
}

impl OursJson {
    fn of(description: &Description) -> OursJson {
        let header = &description.header;
        OursJson {
            kind: kind_name(description),
            type_name: header.type_description().name,
            element_size: header.layout.element_size,
            align: header.layout.payload_align,
            capacity: header.layout.capacity,
            format_version: header.format_version,
            version_supported: description.version_supported,
            state: state_name(header.state),
            creator_pid: header.creator.pid,
            creator_uid: header.creator.uid,
            creator_alive: description.creator_alive,
            lock_holder: description.lock_holder,
            lock_holder_dead: description.lock_holder_dead,
            poisoned: description.poisoned,
            ring_len: description.ring_len,
            fill: fill(description),
            schema_fingerprint: (header.schema.fingerprint != 0)
                .then(|| format!("{:#018x}", header.schema.fingerprint)),
            schema: match &description.schema {
                Some(Ok(schema)) => Some(render_rust(schema)),
                _ => None,
            },
            schema_error: match &description.schema {
                Some(Err(error)) => Some(error.clone()),
                _ => None,
            },
        }
    }
}

/// One row of `shm ls --json`: `{"backend":"sysv",...}` or
/// `{"backend":"posix",...}`.
#[derive(Debug, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
enum ListedJson {
    Sysv(SysvListedJson),
    Posix(PosixListedJson),
}

#[derive(Debug, Serialize)]
struct SysvListedJson {
    key: String,
    id: i32,
    uid: u32,
    perms: String,
    bytes: usize,
    nattch: u64,
    status: &'static str,
    ours: Option<OursJson>,
    /// For a segment without a ready header of ours: one that a creator of
    /// ours began (or that is blank), never finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    unready: Option<UnreadyJson>,
}

#[derive(Debug, Serialize)]
struct PosixListedJson {
    name: String,
    bytes: usize,
    /// Processes other than this `shm` that map the object or hold it open,
    /// each counted once.
    users: usize,
    /// Processes that map it (`/proc/<pid>/maps`).
    mapped_by: usize,
    /// Processes that hold a descriptor open on it (`/proc/<pid>/fd`).
    open_by: usize,
    /// Whether every process's /proc entries could be read; if not, the
    /// three counts are lower bounds.
    users_complete: bool,
    ours: OursJson,
}

/// A store entry in `shm inspect --json`.
#[derive(Debug, Serialize)]
struct EntryJson {
    name: String,
    kind: &'static str,
    #[serde(rename = "type")]
    type_name: String,
    size: u64,
    capacity: u64,
}

/// `shm inspect --json`.
#[derive(Debug, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
enum InspectedJson {
    Sysv(SysvInspectedJson),
    Posix(PosixInspectedJson),
}

#[derive(Debug, Serialize)]
struct SysvInspectedJson {
    id: i32,
    key: String,
    bytes: usize,
    perms: String,
    status: &'static str,
    uid: u32,
    gid: u32,
    cuid: u32,
    cgid: u32,
    cpid: u32,
    lpid: Option<u32>,
    nattch: u64,
    /// Seconds since the epoch; `null` for never.
    atime: Option<u64>,
    dtime: Option<u64>,
    ctime: Option<u64>,
    ours: Option<OursJson>,
    #[serde(flatten)]
    store: Option<StoreJson>,
}

#[derive(Debug, Serialize)]
struct PosixInspectedJson {
    name: String,
    bytes: usize,
    ours: Option<OursJson>,
    #[serde(flatten)]
    store: Option<StoreJson>,
}

/// A store's directory: `"entries": [...]`, or `"entries_error": "..."` when
/// it cannot be read. Absent for what is not a store.
#[derive(Debug, Serialize)]
enum StoreJson {
    #[serde(rename = "entries")]
    Entries(Vec<EntryJson>),
    #[serde(rename = "entries_error")]
    Unreadable(String),
}

impl StoreJson {
    fn of(entries: std::result::Result<Vec<EntryInfo>, String>) -> StoreJson {
        match entries {
            Ok(entries) => StoreJson::Entries(
                entries
                    .into_iter()
                    .map(|entry| EntryJson {
                        name: entry.name,
                        kind: entry.kind.name(),
                        type_name: entry.type_name,
                        size: entry.size,
                        capacity: entry.capacity,
                    })
                    .collect(),
            ),
            Err(error) => StoreJson::Unreadable(error),
        }
    }
}

/// Prints `value` as one line of JSON.
fn say_json(value: &impl Serialize) -> Result {
    let text = serde_json::to_string(value)?;
    say!("{text}");
    Ok(())
}

fn status(info: &SegmentInfo) -> &'static str {
    match (info.marked_for_removal, info.locked) {
        (true, true) => "dest locked",
        (true, false) => "dest",
        (false, true) => "locked",
        (false, false) => "",
    }
}

/// `shm ls`.
pub fn list(json: bool) -> Result {
    // The OS's view first, so that our own read-only attachments (to decode
    // headers) do not show in the counts.
    let segments = sysv::list()?;
    let decoded: Vec<Option<Description>> = segments.iter().map(|s| describe_sysv(s.id)).collect();
    let unready: Vec<Option<Unready>> = segments
        .iter()
        .zip(&decoded)
        .map(|(info, description)| match description {
            Some(_) => None,
            None => describe_sysv_unready(info),
        })
        .collect();
    let posix = our_posix_objects();
    let (posix_users, scan) = posix_users(&posix);
    if let (false, Some(gap)) = (posix.is_empty(), scan.gap()) {
        eprintln!("shm: note: POSIX user counts may be low: {gap}");
    }
    if json {
        let mut items = Vec::with_capacity(segments.len() + posix.len());
        for ((info, description), unready) in segments.iter().zip(&decoded).zip(&unready) {
            items.push(ListedJson::Sysv(SysvListedJson {
                key: info.key.to_string(),
                id: info.id,
                uid: info.uid,
                perms: format!("{:o}", info.mode.bits()),
                bytes: info.size,
                nattch: info.nattch,
                status: status(info),
                ours: description.as_ref().map(OursJson::of),
                unready: unready.as_ref().map(UnreadyJson::of),
            }));
        }
        for (object, users) in posix.iter().zip(&posix_users) {
            items.push(ListedJson::Posix(PosixListedJson {
                name: object.name.clone(),
                bytes: object.size,
                users: users.users,
                mapped_by: users.mapped_by,
                open_by: users.open_by,
                users_complete: users.complete,
                ours: OursJson::of(&object.description),
            }));
        }
        return say_json(&items);
    }
    say!(
        "{:<10} {:<10} {:<6} {:<6} {:<10} {:<6} {:<11} {:<11} {:<20} {:<8} {:<16} fill",
        "key",
        "shmid",
        "uid",
        "perms",
        "bytes",
        "nattch",
        "status",
        "kind",
        "type",
        "state",
        "lock"
    );
    for ((info, description), unready) in segments.iter().zip(&decoded).zip(&unready) {
        let (kind, type_name, state, lock, fill) = match (description, unready) {
            (Some(d), _) => table_columns(d),
            (None, Some(u)) => (
                if u.blank { "blank" } else { "unready" }.into(),
                "-".into(),
                unready_state(u),
                "-".into(),
                "-".into(),
            ),
            (None, None) => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        say!(
            "{:<10} {:<10} {:<6} {:<6o} {:<10} {:<6} {:<11} {:<11} {:<20} {:<8} {:<16} {}",
            info.key.to_string(),
            info.id,
            info.uid,
            info.mode.bits(),
            info.size,
            info.nattch,
            status(info),
            kind,
            type_name,
            state,
            lock,
            fill
        );
    }
    for (object, users) in posix.iter().zip(&posix_users) {
        let (kind, type_name, state, lock, fill) = table_columns(&object.description);
        // The nattch column: the processes using the object; `N+` when the
        // scan could not look at every process.
        let users = format!("{}{}", users.users, if users.complete { "" } else { "+" });
        say!(
            "{:<21} {:<6} {:<6} {:<10} {:<6} {:<11} {:<11} {:<20} {:<8} {:<16} {}",
            printable(&object.name),
            "-",
            "-",
            object.size,
            users,
            "posix",
            kind,
            type_name,
            state,
            lock,
            fill
        );
    }
    Ok(())
}

/// The `kind`, `type`, `state/ver`, `lock` and `fill` columns of `shm ls`.
fn table_columns(d: &Description) -> (String, String, String, String, String) {
    (
        kind_name(d),
        printable(&d.header.type_description().name),
        format!(
            "{}/v{}{}",
            state_name(d.header.state),
            d.header.format_version,
            // Not ready and never to be: say why.
            if d.header.state != State::Ready.code() && !d.creator_alive {
                format!(", creator {} dead", d.header.creator.pid)
            } else {
                String::new()
            }
        ),
        lock_text(d),
        fill(d).unwrap_or_else(|| "-".to_owned()),
    )
}

fn time_text(time: Option<SystemTime>) -> String {
    epoch_seconds(time).map_or("never".to_owned(), |seconds| {
        format!("{seconds} s since the epoch")
    })
}

fn epoch_seconds(time: Option<SystemTime>) -> Option<u64> {
    time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

fn print_description(description: &Description) {
    let header = &description.header;
    let kind = kind_name(description);
    say!(
        "ours: yes (shm-typed format version {})",
        header.format_version
    );
    if !description.version_supported {
        say!(
            "  this build reads versions {} to {}",
            shm_typed::format::OLDEST_FORMAT_VERSION,
            shm_typed::format::FORMAT_VERSION
        );
    }
    say!("kind: {kind}");
    say!(
        "type: {}",
        printable(&header.type_description().to_string())
    );
    say!("state: {}", state_name(header.state));
    say!(
        "creator: pid {} ({}), uid {}, start time {}, pid namespace {}",
        header.creator.pid,
        if description.creator_alive {
            "alive"
        } else {
            "gone"
        },
        header.creator.uid,
        header.creator.start_time,
        header.creator.pid_namespace
    );
    say!("lock: {}", lock_text(description));
    if let Some(fill) = fill(description) {
        say!("fill: {fill}");
    }
    match &description.schema {
        None => say!("schema: none (the type is checked by name, size and alignment only)"),
        Some(Err(error)) => say!("schema: unusable: {}", printable(error)),
        Some(Ok(schema)) => {
            say!(
                "schema: fingerprint {:#018x}, {} bytes at offset {}",
                header.schema.fingerprint,
                header.schema.len,
                header.schema.offset
            );
            for line in render_rust(schema).lines() {
                say!("  {line}");
            }
        }
    }
}

/// An object's current value: field by field from the stored schema, else
/// its first bytes in hex.
fn print_value(description: &Description, value: &ObjectValue) {
    let torn = if value.consistent {
        ""
    } else {
        " (the lock stayed held while reading: the copy may mix old and new bytes)"
    };
    match &description.schema {
        Some(Ok(schema)) => {
            say!("value{torn}:");
            for line in render_value(schema, &value.bytes).lines() {
                say!("  {line}");
            }
        }
        _ => {
            const SHOWN: usize = 64;
            let hex: Vec<String> = value
                .bytes
                .iter()
                .take(SHOWN)
                .map(|byte| format!("{byte:02x}"))
                .collect();
            let more = if value.bytes.len() > SHOWN {
                " ..."
            } else {
                ""
            };
            say!(
                "value{torn}: {} bytes: {}{more}",
                value.bytes.len(),
                hex.join(" ")
            );
        }
    }
}

/// An object's value when `description` is an object's (`map` maps the
/// segment read-only again), else `None`.
fn value_if_object(
    description: Option<&Description>,
    map: impl FnOnce() -> std::result::Result<shm_sys::Mapping, shm_sys::Error>,
) -> Option<(Description, ObjectValue)> {
    if description?.kind != Some(Kind::Object) {
        return None;
    }
    // The schema the value is shown with comes from the same mapping as the
    // value, read just before it.
    let region = Region::from_mapping(map().ok()?);
    let description = describe(&region)?;
    let value = object_value(&region, std::time::Duration::from_millis(100))?;
    Some((description, value))
}

/// `shm inspect --c-header`: the C declarations for the segment, or an error
/// if it is not one of ours.
fn say_c_header(target: &str, description: Option<&Description>) -> Result {
    let description = description
        .ok_or_else(|| format!("{target}: not a segment of ours (no shm-typed header)"))?;
    say!("{}", c_header(description).trim_end());
    Ok(())
}

/// The store's entries when `description` is a store's (`map` maps the
/// segment read-only again), else `None`.
fn entries_if_store(
    description: Option<&Description>,
    map: impl FnOnce() -> std::result::Result<shm_sys::Mapping, shm_sys::Error>,
) -> Option<std::result::Result<Vec<EntryInfo>, String>> {
    if description?.kind != Some(Kind::Store) {
        return None;
    }
    Some(match map() {
        Ok(mapping) => store_entries(Region::from_mapping(mapping)),
        Err(error) => Err(error.to_string()),
    })
}

/// `shm inspect`.
pub fn inspect(target: &str, json: bool, c_header: bool) -> Result {
    match parse_target(target)? {
        Target::Posix(name) => {
            let object = PosixSegment::open_read_only(&name)?;
            let bytes = object.size()?;
            let description = describe_posix(&name).map(|object| object.description);
            if c_header {
                return say_c_header(target, description.as_ref());
            }
            let entries = entries_if_store(description.as_ref(), || object.map_read_only());
            let value = value_if_object(description.as_ref(), || object.map_read_only());
            if json {
                return say_json(&InspectedJson::Posix(PosixInspectedJson {
                    name: object.name().to_owned(),
                    bytes,
                    ours: description.as_ref().map(OursJson::of),
                    store: entries.map(StoreJson::of),
                }));
            }
            say!("POSIX object {}: {bytes} bytes", printable(object.name()));
            print_ours(description.as_ref(), entries.as_ref(), value.as_ref());
        }
        other => {
            let segment = segment_of(&other)?;
            let info = segment.stat()?;
            let description = describe_sysv(info.id);
            if c_header {
                return say_c_header(target, description.as_ref());
            }
            let entries = entries_if_store(description.as_ref(), || segment.attach_read_only());
            let value = value_if_object(description.as_ref(), || segment.attach_read_only());
            if json {
                return say_json(&InspectedJson::Sysv(SysvInspectedJson {
                    id: info.id,
                    key: info.key.to_string(),
                    bytes: info.size,
                    perms: format!("{:o}", info.mode.bits()),
                    status: status(&info),
                    uid: info.uid,
                    gid: info.gid,
                    cuid: info.cuid,
                    cgid: info.cgid,
                    cpid: info.cpid,
                    lpid: info.lpid,
                    nattch: info.nattch,
                    atime: epoch_seconds(info.atime),
                    dtime: epoch_seconds(info.dtime),
                    ctime: epoch_seconds(info.ctime),
                    ours: description.as_ref().map(OursJson::of),
                    store: entries.map(StoreJson::of),
                }));
            }
            say!("System V segment {} (key {})", info.id, info.key);
            say!("bytes: {}", info.size);
            say!("mode: {:o} ({})", info.mode.bits(), info.mode);
            say!(
                "status: {}",
                if status(&info).is_empty() {
                    "-"
                } else {
                    status(&info)
                }
            );
            say!(
                "owner: uid {} gid {}; creator: uid {} gid {}",
                info.uid,
                info.gid,
                info.cuid,
                info.cgid
            );
            say!(
                "cpid: {}; lpid: {}",
                info.cpid,
                info.lpid.map_or("-".to_owned(), |p| p.to_string())
            );
            say!("nattch: {}", info.nattch);
            say!(
                "attached: {}; detached: {}; changed: {}",
                time_text(info.atime),
                time_text(info.dtime),
                time_text(info.ctime)
            );
            print_ours(description.as_ref(), entries.as_ref(), value.as_ref());
        }
    }
    Ok(())
}

/// The part of `shm inspect` about our header (and a store's entries, an
/// object's value).
fn print_ours(
    description: Option<&Description>,
    entries: Option<&std::result::Result<Vec<EntryInfo>, String>>,
    value: Option<&(Description, ObjectValue)>,
) {
    match description {
        Some(description) => {
            print_description(description);
            if let Some(entries) = entries {
                print_store_entries(entries);
            }
            if let Some((described, value)) = value {
                print_value(described, value);
            }
        }
        None => say!("ours: no (no shm-typed header); that is all the OS knows"),
    }
}

/// `shm rm`.
pub fn remove(target: Option<&str>, force: bool, stale: bool) -> Result {
    if stale {
        if target.is_some() {
            return Err("give a target or --stale, not both".into());
        }
        let mut removed = 0;
        for info in sysv::list()? {
            if info.nattch != 0 || info.marked_for_removal {
                continue;
            }
            let why = if describe_sysv(info.id).is_some() {
                String::new()
            } else {
                match describe_sysv_unready(&info) {
                    // Never to be ready: its creator died initialising (or,
                    // blank, before writing anything: no data in it).
                    Some(unready) if unready.creator_dead => {
                        format!(": never initialised, {}", unready_state(&unready))
                    }
                    _ => continue, // not ours, or still being made: never touched
                }
            };
            // Attaching to read the header made nattch 1 for a moment; look again.
            let segment = Segment::from_id(info.id)?;
            if segment.stat()?.nattch == 0 {
                segment.remove()?;
                say!("removed stale segment {} (key {}){why}", info.id, info.key);
                removed += 1;
            }
        }
        removed += crate::users::remove_stale_posix(&our_posix_objects(), describe_posix)?;
        say!("{removed} stale segment(s) removed");
        return Ok(());
    }
    let target = target.ok_or("name a segment, or give --stale")?;
    match parse_target(target)? {
        Target::Posix(name) => {
            PosixSegment::unlink(&name)?;
            say!("unlinked {name}");
        }
        other => {
            let segment = segment_of(&other)?;
            let info = segment.stat()?;
            if info.nattch > 0 && !force {
                return Err(format!(
                    "segment {} is attached by {} process(es); --force removes it anyway (it is freed when they detach)",
                    info.id, info.nattch
                )
                .into());
            }
            segment.remove()?;
            say!("removed segment {} (key {})", info.id, info.key);
        }
    }
    Ok(())
}
