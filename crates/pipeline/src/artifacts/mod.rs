//! The typed files stages hand each other, each with one writer and one reader.

pub mod distill;
pub mod eval;
pub mod size;
