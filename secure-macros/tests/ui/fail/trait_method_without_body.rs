use secure_core::secure_operation;

trait Store {
    #[secure_operation]
    fn get(&self, key: &str) -> Option<String>;
}

fn main() {}
