//! The strand command-line tools. Each binary in `src/bin/` parses its
//! arguments and calls one `cmd::<job>::run`; everything else lives in the
//! library crates.

pub mod args;
pub mod cmd;
pub mod dry_run;
pub mod exit;
pub mod input;
pub mod progress;
pub mod shard;
#[cfg(test)]
mod test_models;
