//! The `integrity` service (being built; see the workspace issues).
