use secure_core::secure_operation;

struct Request {
    path: String,
}

#[secure_operation(record(req))]
fn handle(req: Request) -> usize {
    req.path.len()
}

fn main() {
    handle(Request { path: "/".into() });
}
