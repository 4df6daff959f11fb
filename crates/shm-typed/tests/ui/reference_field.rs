#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct Holder {
    value: &'static u32,
}

fn main() {}
