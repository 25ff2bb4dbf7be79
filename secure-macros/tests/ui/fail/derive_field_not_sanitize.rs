use secure_core::Sanitize;

struct Handle(u32);

#[derive(Sanitize)]
struct Connection {
    host: String,
    handle: Handle,
}

fn main() {}
