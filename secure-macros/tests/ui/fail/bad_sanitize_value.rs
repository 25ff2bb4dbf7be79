use secure_core::secure_operation;

#[secure_operation(sanitize = "no")]
fn ping() -> u8 {
    1
}

fn main() {
    ping();
}
