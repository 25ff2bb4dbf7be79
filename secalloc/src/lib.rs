//! secalloc (being built)
