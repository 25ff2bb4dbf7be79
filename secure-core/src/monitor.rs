//! The `monitor` service (being built; see the workspace issues).
