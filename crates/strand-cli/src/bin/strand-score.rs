use std::process::ExitCode;

use strand_cli::{cmd::score, exit};

fn main() -> ExitCode {
    let args = score::Args::from_env();
    exit::run("strand-score", || score::run(args.validate()?))
}
