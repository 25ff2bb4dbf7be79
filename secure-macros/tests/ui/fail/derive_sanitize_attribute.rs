use secure_core::Sanitize;

#[derive(Sanitize)]
struct Login {
    user: String,
    #[sanitize(redact)]
    pin: String,
}

fn main() {}
