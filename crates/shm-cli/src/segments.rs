//! `shm ls`, `shm inspect`, `shm rm` and `shm create`.

use std::error::Error;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use shm_sys::posix::PosixSegment;
use shm_sys::sysv::{self, Segment, SegmentInfo};
use shm_sys::{Key, Mode};
use shm_typed::format::Kind;
use shm_typed::{describe, Description, Location, Region, Shared, SpscRing};

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

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

/// A store's entries, printed (attached read-only for a moment).
fn print_store_entries(region: Region) {
    match shm_typed::store_entries(region) {
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
                    entry.name,
                    entry.kind.name(),
                    entry.type_name,
                    entry.size
                );
            }
        }
        Err(error) => say!("entries: unreadable: {error}"),
    }
}

/// Our header, if the segment has one (attached read-only for a moment).
fn describe_sysv(id: i32) -> Option<Description> {
    let mapping = Segment::from_id(id).ok()?.attach_read_only().ok()?;
    describe(&Region::from_mapping(mapping))
}

fn describe_posix(name: &str) -> Option<(usize, Description)> {
    let object = PosixSegment::open_read_only(name).ok()?;
    let size = object.size().ok()?;
    let mapping = object.map_read_only().ok()?;
    Some((size, describe(&Region::from_mapping(mapping))?))
}

/// Our POSIX objects: names in /dev/shm whose contents start with our header.
fn our_posix_objects() -> Vec<(String, usize, Description)> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = format!("/{}", entry.file_name().to_string_lossy());
        if let Some((size, description)) = describe_posix(&name) {
            found.push((name, size, description));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
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

fn is_ring(kind: Option<Kind>) -> bool {
    matches!(
        kind,
        Some(Kind::SpscRing | Kind::SpinningSpscRing | Kind::MpmcRing)
    )
}

fn fill_text(description: &Description) -> String {
    match (is_ring(description.kind), description.ring_len) {
        (true, Some(len)) => format!("{len}/{}", description.header.layout.capacity),
        (true, None) => "corrupt".to_owned(),
        (false, _) => "-".to_owned(),
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_description(description: &Description) -> String {
    let header = &description.header;
    format!(
        "{{\"kind\":{},\"type\":{},\"element_size\":{},\"capacity\":{},\"format_version\":{},\"state\":{},\"creator_pid\":{},\"creator_alive\":{},\"lock_holder\":{},\"lock_holder_dead\":{},\"poisoned\":{},\"ring_len\":{}}}",
        json_string(&kind_name(description)),
        json_string(&header.type_description().name),
        header.layout.element_size,
        header.layout.capacity,
        header.format_version,
        json_string(state_name(header.state)),
        header.creator.pid,
        description.creator_alive,
        description.lock_holder.map_or("null".to_owned(), |t| t.to_string()),
        description.lock_holder_dead.map_or("null".to_owned(), |d| d.to_string()),
        description.poisoned,
        description.ring_len.map_or("null".to_owned(), |l| l.to_string()),
    )
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
    let posix = our_posix_objects();
    if json {
        let mut items = Vec::new();
        for (info, description) in segments.iter().zip(&decoded) {
            items.push(format!(
                "{{\"backend\":\"sysv\",\"key\":{},\"id\":{},\"uid\":{},\"perms\":\"{:o}\",\"bytes\":{},\"nattch\":{},\"status\":{},\"ours\":{}}}",
                json_string(&info.key.to_string()),
                info.id,
                info.uid,
                info.mode.bits(),
                info.size,
                info.nattch,
                json_string(status(info)),
                description.as_ref().map_or("null".to_owned(), json_description),
            ));
        }
        for (name, size, description) in &posix {
            items.push(format!(
                "{{\"backend\":\"posix\",\"name\":{},\"bytes\":{size},\"ours\":{}}}",
                json_string(name),
                json_description(description)
            ));
        }
        say!("[{}]", items.join(","));
        return Ok(());
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
    for (info, description) in segments.iter().zip(&decoded) {
        let (kind, type_name, state, lock, fill) = match description {
            Some(d) => (
                kind_name(d),
                d.header.type_description().name,
                format!(
                    "{}/v{}",
                    state_name(d.header.state),
                    d.header.format_version
                ),
                lock_text(d),
                fill_text(d),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
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
    for (name, size, d) in &posix {
        say!(
            "{:<21} {:<6} {:<6} {:<10} {:<6} {:<11} {:<11} {:<20} {:<8} {:<16} {}",
            name,
            "-",
            "-",
            size,
            "-",
            "posix",
            kind_name(d),
            d.header.type_description().name,
            format!(
                "{}/v{}",
                state_name(d.header.state),
                d.header.format_version
            ),
            lock_text(d),
            fill_text(d)
        );
    }
    Ok(())
}

fn time_text(time: Option<SystemTime>) -> String {
    time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or("never".to_owned(), |d| {
            format!("{} s since the epoch", d.as_secs())
        })
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
            "  this build reads version {}",
            shm_typed::format::FORMAT_VERSION
        );
    }
    say!("kind: {kind}");
    say!("type: {}", header.type_description());
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
    if is_ring(description.kind) {
        say!("fill: {}", fill_text(description));
    }
}

/// `shm inspect`.
pub fn inspect(target: &str) -> Result {
    match parse_target(target)? {
        Target::Posix(name) => {
            let object = PosixSegment::open_read_only(&name)?;
            say!("POSIX object {}: {} bytes", object.name(), object.size()?);
            match describe_posix(&name) {
                Some((_, description)) => {
                    print_description(&description);
                    if description.kind == Some(Kind::Store) {
                        if let Ok(mapping) = object.map_read_only() {
                            print_store_entries(Region::from_mapping(mapping));
                        }
                    }
                }
                None => say!("ours: no (no shm-typed header); that is all the OS knows"),
            }
        }
        other => {
            let segment = segment_of(&other)?;
            let info = segment.stat()?;
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
            match describe_sysv(info.id) {
                Some(description) => {
                    print_description(&description);
                    if description.kind == Some(Kind::Store) {
                        if let Ok(mapping) = segment.attach_read_only() {
                            print_store_entries(Region::from_mapping(mapping));
                        }
                    }
                }
                None => say!("ours: no (no shm-typed header); that is all the OS knows"),
            }
        }
    }
    Ok(())
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
            if describe_sysv(info.id).is_none() {
                continue; // not ours: never touched
            }
            // Attaching to read the header made nattch 1 for a moment; look again.
            let segment = Segment::from_id(info.id)?;
            if segment.stat()?.nattch == 0 {
                segment.remove()?;
                say!("removed stale segment {} (key {})", info.id, info.key);
                removed += 1;
            }
        }
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

/// `shm create` options.
#[derive(Debug, clap::Args)]
pub struct CreateOptions {
    /// Where: 0xKEY, path:proj or /posix-name; omitted: a new IPC_PRIVATE segment.
    pub target: Option<String>,
    /// A raw segment of this many bytes (no header).
    #[arg(long, conflicts_with_all = ["u64", "ring"])]
    pub size: Option<usize>,
    /// A typed `u64` value (a `Shared<u64>`) with this initial value.
    #[arg(long, conflicts_with = "ring")]
    pub u64: Option<u64>,
    /// An `SpscRing<u64>` with this capacity (a power of two; mode 600).
    #[arg(long)]
    pub ring: Option<u64>,
    /// Permission bits, octal.
    #[arg(long, default_value = "600")]
    pub mode: String,
    /// Stay attached until killed (for scripts and tests).
    #[arg(long)]
    pub hold: bool,
}

fn location_of(target: Option<&str>) -> Result<Location> {
    Ok(match target.map(parse_target).transpose()? {
        None => Location::Private,
        Some(Target::Key(key)) => Location::from(key),
        Some(Target::Posix(name)) => Location::Posix(name),
        Some(Target::Id(id)) => {
            return Err(
                format!("cannot create by id ({id}): give a key, path:proj or /name").into(),
            )
        }
    })
}

fn report_created(location: &Location) {
    match location {
        Location::Id(id) => say!("created System V segment {id}"),
        other => say!("created {other}"),
    }
}

/// `shm create`.
pub fn create(options: &CreateOptions) -> Result {
    let mode = u16::from_str_radix(&options.mode, 8)
        .ok()
        .and_then(Mode::try_new)
        .ok_or_else(|| format!("bad mode {:?}: octal, at most 777", options.mode))?;
    let location = location_of(options.target.as_deref())?;
    // Keep whatever we made mapped while --hold waits.
    let _keep: Box<dyn std::any::Any> = if let Some(size) = options.size {
        match &location {
            Location::Posix(name) => {
                let object = PosixSegment::create_with_mode(name, size, mode)?;
                say!("created {name}");
                Box::new(object.map()?)
            }
            other => {
                let key = match other {
                    Location::Key(key) => *key,
                    _ => Key::PRIVATE,
                };
                let segment = Segment::options(key).size(size).mode(mode).create()?;
                say!("created System V segment {}", segment.id());
                Box::new(segment.attach()?)
            }
        }
    } else if let Some(value) = options.u64 {
        let shared = Shared::<u64>::options()
            .mode(mode)
            .create(location, value)?;
        report_created(shared.location());
        Box::new(shared)
    } else if let Some(capacity) = options.ring {
        let ring = SpscRing::<u64>::create(location, capacity)?;
        report_created(ring.location());
        Box::new(ring)
    } else {
        return Err("say what to create: --size N, --u64 VALUE or --ring CAPACITY".into());
    };
    if options.hold {
        say!("holding; kill this process to detach");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(())
}
