#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(u8)]
enum Side {
    Buy = 1,
    Sell = 2,
}

// A u16 cannot hold a u8 enum's bits as that enum; nor can a shorter array.
#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct Order {
    #[shm(as = Side)]
    side: u16,
    #[shm(as = [Side; 3])]
    legs: [u8; 2],
}

#[derive(Clone, Copy, shm_typed::ShmType)]
#[repr(C)]
struct Unknown {
    #[shm(name = "x")]
    a: u32,
}

fn main() {}
