use secure_core::Sanitize;

#[derive(Sanitize)]
struct View<'a> {
    name: &'a str,
}

fn main() {}
