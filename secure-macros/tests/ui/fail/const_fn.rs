use secure_core::secure_operation;

#[secure_operation]
const fn double(x: u32) -> u32 {
    x * 2
}

fn main() {
    double(2);
}
