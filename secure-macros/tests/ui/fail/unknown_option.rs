use secure_core::secure_operation;

#[secure_operation(name = "load", verbose)]
fn load(path: &str) -> usize {
    path.len()
}

fn main() {
    load("x");
}
