use secure_core::secure_operation;

#[secure_operation(level = "info", level = "warn")]
fn load(path: &str) -> usize {
    path.len()
}

fn main() {
    load("x");
}
