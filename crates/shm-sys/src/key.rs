//! System V IPC keys: raw values, `IPC_PRIVATE`, and `ftok`.

use std::fmt;
use std::path::Path;

use crate::error::{Errno, Error, Result, Target};

/// A System V IPC key (`key_t`): the name under which unrelated processes find a
/// segment.
///
/// Make one from a number agreed on in advance ([`Key::new`]), from a file path
/// and project id ([`Key::ftok`]), or use [`Key::PRIVATE`] for a segment that only
/// processes told its id can find.
///
/// Keys display as `0x%08x`, the way `ipcs -m` prints them.
///
/// ```
/// use shm_sys::Key;
///
/// let key = Key::new(0x5eed);
/// assert_eq!(key.to_string(), "0x00005eed");
/// assert!(Key::PRIVATE.is_private());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(i32);

impl Key {
    /// `IPC_PRIVATE`: `shmget` always creates a new segment that has no key.
    #[doc(alias = "IPC_PRIVATE")]
    pub const PRIVATE: Key = Key(libc::IPC_PRIVATE);

    /// A key from its raw value. The value 0 is [`Key::PRIVATE`].
    pub const fn new(raw: i32) -> Key {
        Key(raw)
    }

    /// The raw `key_t` value.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// Whether this is `IPC_PRIVATE`.
    pub const fn is_private(self) -> bool {
        self.0 == libc::IPC_PRIVATE
    }

    /// Derives a key from an existing file and a project id, exactly as glibc's
    /// `ftok(3)` does:
    ///
    /// ```text
    /// key = (st_ino & 0xffff) | ((st_dev & 0xff) << 16) | ((project_id & 0xff) << 24)
    /// ```
    ///
    /// Only the low 8 bits of `project_id` are used, so 1 and 257 give the same
    /// key, and 0 is accepted (as glibc accepts it, although POSIX asks for a
    /// non-zero id). Two paths on different devices, or whose inode numbers agree
    /// in their low 16 bits, can give the same key: `ftok` is a convention, not a
    /// unique name. The file must exist; it is `stat`ed, never opened.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the path does not exist, [`Error::PermissionDenied`]
    /// if a directory on the way cannot be searched, naming the path.
    ///
    /// ```
    /// use shm_sys::Key;
    ///
    /// let dir = std::env::temp_dir();
    /// let key = Key::ftok(&dir, b'q')?;
    /// assert_eq!(key, Key::ftok(&dir, b'q')?);
    /// assert_ne!(key, Key::ftok(&dir, b'r')?);
    /// assert!(Key::ftok("/no/such/path", 1).is_err());
    /// # Ok::<(), shm_sys::Error>(())
    /// ```
    ///
    /// # References
    /// - [`ftok(3)`](https://man7.org/linux/man-pages/man3/ftok.3.html)
    pub fn ftok(path: impl AsRef<Path>, project_id: impl Into<i32>) -> Result<Key> {
        let path = path.as_ref();
        let stat = rustix::fs::stat(path).map_err(|errno| {
            Error::from_errno(
                "ftok",
                Target::Path(path.to_owned()),
                Errno::from(errno),
                None,
            )
        })?;
        Ok(Key::from_stat_fields(
            stat.st_ino,
            stat.st_dev,
            project_id.into(),
        ))
    }

    /// glibc's formula, on the raw `stat` fields.
    fn from_stat_fields(inode: u64, device: u64, project_id: i32) -> Key {
        let low_inode = (inode & 0xffff) as u32;
        let low_device = ((device & 0xff) as u32) << 16;
        let project = ((project_id as u32) & 0xff) << 24;
        Key((low_inode | low_device | project) as i32)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0 as u32)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_private() {
            f.write_str("Key(IPC_PRIVATE)")
        } else {
            write!(f, "Key({self})")
        }
    }
}

impl From<i32> for Key {
    fn from(raw: i32) -> Key {
        Key(raw)
    }
}

impl From<Key> for i32 {
    fn from(key: Key) -> i32 {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_masks_each_field() {
        let key = Key::from_stat_fields(0x1234_abcd, 0xfe12, 0x171);
        assert_eq!(key.raw() as u32, 0x7112_abcd);
        // Project id 0 and ids above 255 are accepted, as in glibc.
        assert_eq!(Key::from_stat_fields(5, 1, 0).raw(), 0x0001_0005);
        assert_eq!(
            Key::from_stat_fields(5, 1, 256 + 7),
            Key::from_stat_fields(5, 1, 7)
        );
        // A high project id sets the sign bit of key_t.
        assert!(Key::from_stat_fields(0, 0, 0xff).raw() < 0);
    }

    #[test]
    fn missing_path_is_not_found_naming_the_path() {
        let err = Key::ftok("/definitely/not/here", b'x').unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("/definitely/not/here"), "{err}");
    }

    #[test]
    fn display_matches_ipcs() {
        assert_eq!(Key::new(-1).to_string(), "0xffffffff");
        assert_eq!(Key::PRIVATE.to_string(), "0x00000000");
        assert_eq!(format!("{:?}", Key::PRIVATE), "Key(IPC_PRIVATE)");
    }
}
