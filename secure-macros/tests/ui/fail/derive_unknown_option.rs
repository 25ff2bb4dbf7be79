use secure_core::Sanitize;

#[derive(Sanitize)]
struct Login {
    user: String,
    #[secure(hide)]
    password: String,
}

fn main() {}
