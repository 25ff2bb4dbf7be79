use secure_core::secure_operation;

#[secure_operation(err)]
fn count(items: &[u8]) -> usize {
    items.len()
}

fn main() {
    count(&[1]);
}
