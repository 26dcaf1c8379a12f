//! End-to-end tests: the built binaries run on `test-data/`, as a user or a
//! pipeline would run them. One test binary, a module per command.
//!
//! Run with `cargo test --release -p strand-cli --test cli`.

mod classify;
mod dry_run;
mod embed;
mod score;
mod strand;
mod util;
