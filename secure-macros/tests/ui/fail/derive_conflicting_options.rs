use secure_core::Sanitize;

#[derive(Sanitize)]
struct Login {
    user: String,
    #[secure(redact, skip)]
    password: String,
}

fn main() {}
