#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C, packed)]
struct Tick {
    side: u8,
    qty: u64,
}

fn main() {}
