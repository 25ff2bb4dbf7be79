use secure_core::secure_operation;

struct Session {
    id: u64,
}

#[secure_operation]
fn open_session() -> Session {
    Session { id: 7 }
}

fn main() {
    let _ = open_session().id;
}
