use std::process::ExitCode;

use clap::Parser;
use strand_cli::{cmd::embed, exit};

fn main() -> ExitCode {
    let args = embed::Args::parse();
    exit::run("strand-embed", || embed::run(args.validate()?))
}
