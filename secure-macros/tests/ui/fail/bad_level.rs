use secure_core::secure_operation;

#[secure_operation(level = "loud")]
fn ping() -> u8 {
    1
}

fn main() {
    ping();
}
