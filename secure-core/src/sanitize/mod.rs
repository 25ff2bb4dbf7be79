//! The `sanitize` service (being built; see the workspace issues).
