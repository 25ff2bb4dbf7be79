use secure_core::Sanitize;

#[derive(Sanitize)]
struct Card {
    #[secure(with)]
    number: String,
}

fn main() {}
