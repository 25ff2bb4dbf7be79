use secure_core::secure_operation;

#[secure_operation(sanitize = "csv policy")]
fn export() -> String {
    "a,b\n".into()
}

fn main() {
    export();
}
