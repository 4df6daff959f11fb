// 17 nodes deep: the struct, 15 arrays, a u8.
#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct Deep {
    value: [[[[[[[[[[[[[[[u8; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1],
}

// 16 deep is fine.
#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct DeepEnough {
    value: [[[[[[[[[[[[[[u8; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1],
}

fn main() {}
