use std::process::ExitCode;

use clap::Parser;
use strand_cli::{cmd::classify, exit};

fn main() -> ExitCode {
    let args = classify::Args::parse();
    exit::run(classify::PROG, || classify::run(args.validate()?))
}
