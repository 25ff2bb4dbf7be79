use secure_core::secure_operation;

#[secure_operation(sanitize = strict)]
fn lines(n: u32) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("line {i}\n"))
}

fn main() {
    let _ = lines(2).count();
}
