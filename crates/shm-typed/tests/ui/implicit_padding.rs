#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct Tick {
    side: u8,
    qty: u32,
}

#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct Tail {
    qty: u64,
    side: u8,
}

fn main() {}
