use std::process::ExitCode;

use clap::Parser;
use strand_cli::{cmd::score, exit};

fn main() -> ExitCode {
    let args = score::Args::parse();
    exit::run("strand-score", || score::run(args))
}
