use secure_core::Sanitize;

#[derive(Sanitize)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
