//! The `manifest` service (being built; see the workspace issues).
