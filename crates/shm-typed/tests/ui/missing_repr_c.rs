#[derive(Clone, Copy, shm_typed::ShmType)]
struct Tick {
    price: f64,
    qty: u64,
}

fn main() {}
