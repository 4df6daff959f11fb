#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct Wrapper<T> {
    value: T,
}

fn main() {}
