#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(u8)]
enum Message {
    Empty,
    Price(f64),
}

fn main() {}
