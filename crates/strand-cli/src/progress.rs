//! Progress on stderr: a bar on a terminal, nothing otherwise (logs stay
//! clean in pipelines), nothing at all with `-q`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bases-processed counter.
pub fn bases(quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {human_pos} bases, {per_sec} {msg}",
        )
        .expect("a valid template"),
    );
    bar
}
