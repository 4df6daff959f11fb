#[derive(Clone, Copy)]
#[repr(C)]
struct Plain {
    a: u32,
}

#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct Outer {
    plain: Plain,
    flag: [bool; 4],
}

fn main() {}
