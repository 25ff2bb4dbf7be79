use secure_core::secure_operation;

#[secure_operation(record(user, pasword))]
fn login(user: &str, password: &str) -> bool {
    user.len() + password.len() > 3
}

fn main() {
    login("a", "b");
}
