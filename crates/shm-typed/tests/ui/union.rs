#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
