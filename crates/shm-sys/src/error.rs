//! The one error type of this crate.
//!
//! Every variant names the operation that failed (`shmget`, `shm_open`, ...), the
//! object it concerned (a [`Target`]: key, id, path or name) and, when the kernel
//! said no, the [`Errno`] it returned. The mapping from errno to variant follows
//! Python's `sysv_ipc`: the variant says what it *means*, the errno says exactly
//! what the kernel answered.

use std::fmt;
use std::path::PathBuf;

use crate::key::Key;
use crate::memfd::Seals;

/// What an operation was about: the object named in every error message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A System V key, as given to `shmget`.
    Key(Key),
    /// A System V segment identifier, as returned by `shmget`.
    Id(i32),
    /// A file path, as given to `ftok`.
    Path(PathBuf),
    /// A POSIX shared-memory object name, as given to `shm_open`.
    PosixName(String),
    /// A memfd, by the name it was created with.
    Memfd(String),
    /// The host as a whole (listing segments, reading limits).
    Host,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Key(key) if key.is_private() => f.write_str("SysV key IPC_PRIVATE"),
            Target::Key(key) => write!(f, "SysV key {key}"),
            Target::Id(id) => write!(f, "SysV segment id {id}"),
            Target::Path(path) => write!(f, "path {}", path.display()),
            Target::PosixName(name) => write!(f, "POSIX shm object {name:?}"),
            Target::Memfd(name) => write!(f, "memfd {name:?}"),
            Target::Host => f.write_str("host"),
        }
    }
}

/// An errno value returned by the kernel, displayed with its symbolic name and
/// its description: `EEXIST (File exists)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// Wraps a raw errno value.
    pub const fn from_raw(raw: i32) -> Errno {
        Errno(raw)
    }

    /// The raw errno value.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The symbolic name (`"EEXIST"`) for the errno values shared memory calls
    /// return, or `None` for others.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EINTR => "EINTR",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ENFILE => "ENFILE",
            libc::EMFILE => "EMFILE",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::ENOSYS => "ENOSYS",
            libc::EOVERFLOW => "EOVERFLOW",
            libc::EIDRM => "EIDRM",
            libc::ENOTDIR => "ENOTDIR",
            libc::ELOOP => "ELOOP",
            libc::ETXTBSY => "ETXTBSY",
            _ => return None,
        })
    }

    /// Converts a [`std::io::Error`] carrying an OS error code; other errors become `EIO`.
    pub fn from_io(error: &std::io::Error) -> Errno {
        Errno(error.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(errno: rustix::io::Errno) -> Errno {
        Errno(errno.raw_os_error())
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "Errno({name})"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let description = std::io::Error::from_raw_os_error(self.0);
        // `io::Error` prints "File exists (os error 17)"; keep only the description.
        let text = description.to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        match self.name() {
            Some(name) => write!(f, "{name}: {text}"),
            None => write!(f, "errno {}: {text}", self.0),
        }
    }
}

/// The error type of every fallible operation in `shm-sys`.
///
/// `op` is the C call (or our operation) that failed; `target` names the key, id,
/// path or name involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist (`ENOENT`, or an id that was removed: `EIDRM`,
    /// `EINVAL` from `shmctl`).
    #[error("{op}: {target} does not exist ({errno})")]
    NotFound {
        /// The failing call.
        op: &'static str,
        /// What it was about.
        target: Target,
        /// The kernel's answer.
        errno: Errno,
    },
    /// Exclusive creation found an existing object (`EEXIST`).
    #[error("{op}: {target} already exists ({errno})")]
    AlreadyExists {
        /// The failing call.
        op: &'static str,
        /// What it was about.
        target: Target,
        /// The kernel's answer.
        errno: Errno,
    },
    /// The caller lacks permission (`EACCES`, `EPERM`).
    #[error("{op}: permission denied on {target} ({errno})")]
    PermissionDenied {
        /// The failing call.
        op: &'static str,
        /// What it was about.
        target: Target,
        /// The kernel's answer.
        errno: Errno,
    },
    /// The requested size is invalid: outside the system's limits, zero, or larger
    /// than an existing segment opened by key (`EINVAL` from `shmget`).
    #[error("{op}: size {size} is invalid for {target} ({errno})")]
    InvalidSize {
        /// The failing call.
        op: &'static str,
        /// What it was about.
        target: Target,
        /// The size that was asked for.
        size: usize,
        /// The kernel's answer.
        errno: Errno,
    },
    /// The system ran out of a resource: memory, segment count, file descriptors
    /// (`ENOSPC`, `ENOMEM`, `ENFILE`, `EMFILE`).
    #[error("{op}: out of resources for {target} ({errno})")]
    OutOfResources {
        /// The failing call.
        op: &'static str,
        /// What it was about.
        target: Target,
        /// The kernel's answer.
        errno: Errno,
    },
    /// An argument we were given is not acceptable; `what` says which and why.
    #[error("{op}: invalid argument for {target}: {what}")]
    InvalidArgument {
        /// The failing call.
        op: &'static str,
        /// What it was about.
        target: Target,
        /// What is wrong.
        what: String,
    },
    /// A write through a mapping that was attached read-only.
    #[error("{op}: {target} is mapped read-only")]
    ReadOnly {
        /// The refused operation.
        op: &'static str,
        /// What it was about.
        target: Target,
    },
    /// An access outside a mapping's bounds.
    #[error("{op}: range {offset}..{offset}+{len} is outside the {mapping_len}-byte mapping of {target}")]
    OutOfBounds {
        /// The refused operation.
        op: &'static str,
        /// What it was about.
        target: Target,
        /// Start of the requested range.
        offset: usize,
        /// Length of the requested range.
        len: usize,
        /// Length of the mapping.
        mapping_len: usize,
    },
    /// A memfd received from another process lacks a seal this process relies
    /// on: without `F_SEAL_SHRINK` a holder of the descriptor could shrink the
    /// file under a mapping, and touching the lost pages raises `SIGBUS`.
    #[error(
        "{op}: {target} (fd {fd}) is not sealed with {missing:?} (it has {found:?}); \
         a peer could shrink it under a mapping and crash this process with SIGBUS"
    )]
    NotSealed {
        /// The check that failed (`fcntl(F_GET_SEALS)`).
        op: &'static str,
        /// The memfd, by the label it was given.
        target: Target,
        /// The descriptor number in this process.
        fd: i32,
        /// The seals required but absent.
        missing: Seals,
        /// The seals in force.
        found: Seals,
    },
    /// Any other error the kernel returned.
    #[error("{op}: {target}: {errno}")]
    Os {
        /// The failing call.
        op: &'static str,
        /// What it was about.
        target: Target,
        /// The kernel's answer.
        errno: Errno,
    },
}

impl Error {
    /// Maps an errno from `op` on `target` to the variant that says what it means.
    ///
    /// `size` is the size involved, if any: it turns `EINVAL` from a sizing call
    /// into [`Error::InvalidSize`].
    pub(crate) fn from_errno(
        op: &'static str,
        target: Target,
        errno: Errno,
        size: Option<usize>,
    ) -> Error {
        match errno.raw() {
            libc::ENOENT | libc::EIDRM => Error::NotFound { op, target, errno },
            // shmctl/shmat answer EINVAL for an id that names no segment.
            libc::EINVAL if matches!(target, Target::Id(_)) && size.is_none() => {
                Error::NotFound { op, target, errno }
            }
            libc::EINVAL if size.is_some() => Error::InvalidSize {
                op,
                target,
                size: size.unwrap_or(0),
                errno,
            },
            libc::EEXIST => Error::AlreadyExists { op, target, errno },
            libc::EACCES | libc::EPERM => Error::PermissionDenied { op, target, errno },
            libc::ENOSPC | libc::ENOMEM | libc::ENFILE | libc::EMFILE => {
                Error::OutOfResources { op, target, errno }
            }
            _ => Error::Os { op, target, errno },
        }
    }

    /// The errno the kernel returned, when the error came from the kernel.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::NotFound { errno, .. }
            | Error::AlreadyExists { errno, .. }
            | Error::PermissionDenied { errno, .. }
            | Error::InvalidSize { errno, .. }
            | Error::OutOfResources { errno, .. }
            | Error::Os { errno, .. } => Some(*errno),
            Error::InvalidArgument { .. }
            | Error::ReadOnly { .. }
            | Error::OutOfBounds { .. }
            | Error::NotSealed { .. } => None,
        }
    }

    /// The key, id, path or name the error is about.
    pub fn target(&self) -> &Target {
        match self {
            Error::NotFound { target, .. }
            | Error::AlreadyExists { target, .. }
            | Error::PermissionDenied { target, .. }
            | Error::InvalidSize { target, .. }
            | Error::OutOfResources { target, .. }
            | Error::InvalidArgument { target, .. }
            | Error::ReadOnly { target, .. }
            | Error::OutOfBounds { target, .. }
            | Error::NotSealed { target, .. }
            | Error::Os { target, .. } => target,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_meaning_and_message_names_key_and_errno() {
        let key = Key::new(0x5eed);
        let err = Error::from_errno(
            "shmget",
            Target::Key(key),
            Errno::from_raw(libc::EEXIST),
            None,
        );
        assert!(matches!(err, Error::AlreadyExists { .. }));
        let text = err.to_string();
        assert!(text.contains("0x00005eed"), "{text}");
        assert!(text.contains("EEXIST"), "{text}");
        assert!(text.starts_with("shmget:"), "{text}");

        let err = Error::from_errno(
            "shmget",
            Target::Key(key),
            Errno::from_raw(libc::EINVAL),
            Some(8192),
        );
        assert!(
            matches!(err, Error::InvalidSize { size: 8192, .. }),
            "{err:?}"
        );

        let err = Error::from_errno("shmctl", Target::Id(7), Errno::from_raw(libc::EINVAL), None);
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        for (raw, denied) in [
            (libc::EACCES, true),
            (libc::EPERM, true),
            (libc::EBUSY, false),
        ] {
            let err = Error::from_errno("shmat", Target::Id(7), Errno::from_raw(raw), None);
            assert_eq!(
                matches!(err, Error::PermissionDenied { .. }),
                denied,
                "{err:?}"
            );
        }
        for raw in [libc::ENOSPC, libc::ENOMEM, libc::ENFILE, libc::EMFILE] {
            let err = Error::from_errno("shmget", Target::Key(key), Errno::from_raw(raw), None);
            assert!(matches!(err, Error::OutOfResources { .. }), "{err:?}");
        }
        let err = Error::from_errno("shmat", Target::Id(3), Errno::from_raw(libc::EBUSY), None);
        assert_eq!(err.errno(), Some(Errno::from_raw(libc::EBUSY)));
        assert_eq!(err.target(), &Target::Id(3));
    }

    #[test]
    fn errno_display_has_name_and_description() {
        let text = Errno::from_raw(libc::ENOENT).to_string();
        assert_eq!(text, "ENOENT: No such file or directory");
        assert_eq!(
            format!("{:?}", Errno::from_raw(libc::EACCES)),
            "Errno(EACCES)"
        );
        assert!(Errno::from_raw(4095).to_string().starts_with("errno 4095"));
    }
}
