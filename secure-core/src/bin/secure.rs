//! The `secure` command-line tool (being built).
fn main() {
    eprintln!("secure: no commands yet");
    std::process::exit(2);
}
