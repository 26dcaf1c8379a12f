use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strand_cli::{cmd, exit};

/// Caduceus DNA language models from the command line.
///
/// The jobs are separate programs (strand-embed, strand-score,
/// strand-classify); this one holds the tools
/// around them.
#[derive(Parser)]
#[command(name = "strand", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CPU features, GPU support and model cache strand sees
    Doctor,
    /// Measure forward-pass throughput and peak memory
    Bench(cmd::bench::Args),
    /// Join VCFs (e.g. strand-score shards) into one, indexed when .gz or .bcf
    Concat(cmd::concat::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::run("strand", || match cli.command {
        Command::Doctor => cmd::doctor::run(),
        Command::Bench(a) => cmd::bench::run(a.validate()?),
        Command::Concat(a) => cmd::concat::run(a.validate()?),
    })
}
