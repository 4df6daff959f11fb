//! The segment layer, below every typed kind: the byte [`format`], the OS
//! object behind a segment ([`os`]), the mapped bytes ([`region`]), the init
//! protocol over the header ([`header`]), and the [`Segment`] handle that
//! holds them together.

pub mod format;
mod handle;
pub(crate) mod header;
pub(crate) mod os;
pub(crate) mod region;

pub(crate) use handle::{Opening, Segment};
