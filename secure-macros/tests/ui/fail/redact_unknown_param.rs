use secure_core::secure_operation;

#[secure_operation(redact(token))]
fn ping() -> u8 {
    1
}

fn main() {
    ping();
}
