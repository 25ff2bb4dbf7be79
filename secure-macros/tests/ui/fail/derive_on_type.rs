use secure_core::Sanitize;

#[derive(Sanitize)]
#[secure(redact)]
struct Token(String);

fn main() {}
