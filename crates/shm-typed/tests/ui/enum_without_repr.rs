#[derive(Clone, Copy, shm_typed::ShmType)]
enum Side {
    Buy,
    Sell,
}

fn main() {}
