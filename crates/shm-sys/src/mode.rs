//! Permission bits shared by every backend.

use std::fmt;

/// Permission bits (`0o777` at most) for a segment or object: who may attach it
/// for reading and for writing. Execute bits are accepted and ignored by System V.
///
/// The default, [`Mode::OWNER_RW`], is `0o600`: only the creating user.
///
/// ```
/// use shm_sys::Mode;
///
/// let mode = Mode::new(0o640);
/// assert_eq!(mode.bits(), 0o640);
/// assert_eq!(mode.to_string(), "rw-r-----");
/// assert_eq!(Mode::default(), Mode::OWNER_RW);
/// assert!(Mode::try_new(0o1777).is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(u16);

impl Mode {
    /// `0o600`: read and write for the owner only. The default.
    pub const OWNER_RW: Mode = Mode(0o600);
    /// `0o660`: read and write for the owner and the group.
    pub const GROUP_RW: Mode = Mode(0o660);
    /// `0o644`: the owner writes, everyone reads.
    pub const WORLD_READABLE: Mode = Mode(0o644);
    /// `0o666`: everyone reads and writes.
    pub const WORLD_RW: Mode = Mode(0o666);

    /// Permission bits from an octal number.
    ///
    /// # Panics
    ///
    /// If `bits` has anything set outside `0o777` (use [`Mode::try_new`] to check
    /// untrusted input). In a `const` context this is a compile error.
    pub const fn new(bits: u16) -> Mode {
        match Mode::try_new(bits) {
            Some(mode) => mode,
            None => panic!("permission bits must be within 0o777"),
        }
    }

    /// Permission bits from an octal number, or `None` if anything outside `0o777`
    /// is set.
    pub const fn try_new(bits: u16) -> Option<Mode> {
        if bits & !0o777 == 0 {
            Some(Mode(bits))
        } else {
            None
        }
    }

    /// Keeps the permission bits of a kernel mode word and drops the rest
    /// (file type, `SHM_DEST`, `SHM_LOCKED`).
    pub(crate) const fn from_mode_word(word: u32) -> Mode {
        Mode((word & 0o777) as u16)
    }

    /// The bits, as a number `<= 0o777`.
    pub const fn bits(self) -> u16 {
        self.0
    }
}

impl Default for Mode {
    fn default() -> Mode {
        Mode::OWNER_RW
    }
}

impl fmt::Display for Mode {
    /// `rw-r-----`, as `ls -l` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [b'-'; 9];
        for (index, letter) in b"rwxrwxrwx".iter().enumerate() {
            if self.0 & (1 << (8 - index)) != 0 {
                text[index] = *letter;
            }
        }
        f.write_str(std::str::from_utf8(&text).unwrap_or("?????????"))
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mode({:#o})", self.0)
    }
}
