//! Typed values, a robust in-segment lock and ring buffers in shared memory.
//!
//! Not built yet: this crate will place `bytemuck::Pod` values and fixed-capacity
//! rings into segments made with [`shm_sys`], behind a header (magic, format
//! version, type layout, init state) that an opener validates before it trusts a
//! byte, and an in-segment lock that recovers from a holder that died. See the
//! project's design document for the planned format.

#![cfg(target_os = "linux")]

pub use shm_sys;
