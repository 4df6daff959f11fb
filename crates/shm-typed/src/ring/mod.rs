//! The rings: the lock-free protocols ([`protocol`], shared with the loom
//! models), the futex wait/wake layer ([`blocking`]), and the two kinds,
//! [`SpscRing`](spsc::SpscRing) and [`MpmcRing`](mpmc::MpmcRing).

pub(crate) mod blocking;
pub(crate) mod mpmc;
pub(crate) mod protocol;
pub(crate) mod spsc;
