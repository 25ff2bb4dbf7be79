//! Procedural macros of the secalloc toolkit, used through `secure-core`
//! (`secure_core::secure_operation`, `#[derive(secure_core::Sanitize)]`).
//! Generated code refers to `::secure_core` items only.
