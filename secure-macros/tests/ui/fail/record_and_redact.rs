use secure_core::secure_operation;

#[secure_operation(record(user, pin), redact(pin))]
fn unlock(user: &str, pin: u32) -> bool {
    !user.is_empty() && pin > 0
}

fn main() {
    unlock("a", 1);
}
