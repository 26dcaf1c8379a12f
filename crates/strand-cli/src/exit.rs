//! Turning a command's result into a message and an exit code.
//!
//! 0 on success, 1 on a runtime failure, 2 on a usage error (clap's own).
//! A broken pipe (e.g. `strand-embed ... -o - | head`) exits 0 quietly, as
//! Unix tools do.

use std::process::ExitCode;

/// Runs `f`, printing `prog: message` on failure with the error chain
/// joined on one line.
pub fn run(prog: &str, f: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match f() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                // Library errors already carry their context; skip repeats.
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("{prog}: {msg}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}
