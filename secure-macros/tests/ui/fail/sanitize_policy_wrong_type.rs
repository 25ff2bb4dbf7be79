use secure_core::secure_operation;

fn max_len() -> usize {
    64
}

#[secure_operation(sanitize = "max_len")]
fn export() -> String {
    "a,b\n".into()
}

fn main() {
    export();
}
