//! [`Location`]: where a segment lives.

use std::fmt;
use std::path::PathBuf;

use shm_sys::Key;

/// Where a segment lives: how a process finds it.
///
/// ```
/// use shm_typed::Location;
/// use shm_sys::Key;
///
/// let by_key = Location::Key(Key::new(0x5eed));
/// assert_eq!(by_key.to_string(), "SysV key 0x00005eed");
/// let by_name = Location::posix("/ticks");
/// assert_eq!(by_name.to_string(), "POSIX shm \"/ticks\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Location {
    /// A System V segment by key.
    Key(Key),
    /// A System V segment by the key `ftok(path, project_id)` gives.
    Ftok(PathBuf, i32),
    /// A System V segment by id (how other processes reach an `IPC_PRIVATE` one).
    Id(i32),
    /// A new `IPC_PRIVATE` System V segment (create only).
    Private,
    /// A POSIX shared-memory object by name.
    Posix(String),
    /// A heap [`Region`](crate::Region) in this process (tests, single process).
    Heap,
    /// An entry of a [`Store`](crate::Store): what the handles the store hands
    /// out name in their errors. Opened through the store, not by itself.
    Entry {
        /// Where the store is.
        store: Box<Location>,
        /// The entry's name.
        name: String,
    },
}

impl Location {
    /// A POSIX shm object name.
    pub fn posix(name: impl Into<String>) -> Location {
        Location::Posix(name.into())
    }

    /// The key `ftok(path, project_id)` gives.
    pub fn ftok(path: impl Into<PathBuf>, project_id: impl Into<i32>) -> Location {
        Location::Ftok(path.into(), project_id.into())
    }
}

impl From<Key> for Location {
    fn from(key: Key) -> Location {
        if key.is_private() {
            Location::Private
        } else {
            Location::Key(key)
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Key(key) => write!(f, "SysV key {key}"),
            Location::Ftok(path, project) => {
                write!(f, "SysV ftok({}, {project})", path.display())
            }
            Location::Id(id) => write!(f, "SysV segment id {id}"),
            Location::Private => f.write_str("SysV IPC_PRIVATE segment"),
            Location::Posix(name) => write!(f, "POSIX shm {name:?}"),
            Location::Heap => f.write_str("heap region"),
            Location::Entry { store, name } => write!(f, "entry {name:?} of {store}"),
        }
    }
}
