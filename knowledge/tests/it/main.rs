//! The knowledge base's integration tests.
//!
//! One binary for the crate (faster to link than one per file); each module
//! is one area, named as its file.

mod kb;
