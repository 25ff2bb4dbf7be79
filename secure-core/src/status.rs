//! The `status` service (being built; see the workspace issues).
