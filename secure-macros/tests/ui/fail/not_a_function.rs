use secure_core::secure_operation;

#[secure_operation]
struct Config {
    port: u16,
}

fn main() {
    let _ = Config { port: 1 }.port;
}
