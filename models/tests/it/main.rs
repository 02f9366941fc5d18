//! The models' integration tests: the loader, reproducible training and the transformer
//! path.
//!
//! One binary for the crate (faster to link than one per file); each module
//! is one area, named as its file.

mod common;
mod loader;
mod training;
mod transformer;
