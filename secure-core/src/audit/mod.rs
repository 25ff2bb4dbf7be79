//! The `audit` service (being built; see the workspace issues).
