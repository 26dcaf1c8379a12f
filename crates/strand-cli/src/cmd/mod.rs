//! One module per command.

pub mod bench;
pub mod classify;
pub mod concat;
pub mod doctor;
pub mod embed;
pub mod score;
