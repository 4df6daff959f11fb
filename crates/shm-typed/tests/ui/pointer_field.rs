#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct Holder {
    values: [*const u8; 2],
}

fn main() {}
