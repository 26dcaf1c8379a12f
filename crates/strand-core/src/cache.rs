//! strand's own cache directory, shared by what strand keeps between
//! runs on a machine: the compiled GPU kernels (`kernels/`) and the
//! throughput measured by `strand bench` (`calibration.tsv`).

use std::path::PathBuf;

/// `$STRAND_CACHE_DIR`, else `$XDG_CACHE_HOME/strand`, else
/// `~/.cache/strand`; `None` when none of them is set.
pub fn dir() -> Option<PathBuf> {
    dir_from(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
}

fn dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let var = |k: &str| var(k).map(PathBuf::from);
    var("STRAND_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("strand")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/strand")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        const ALL: &[(&str, &str)] = &[
            ("STRAND_CACHE_DIR", "/s"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(dir_from(env(ALL)), Some("/s".into()));
        assert_eq!(dir_from(env(&ALL[1..])), Some("/x/strand".into()));
        assert_eq!(dir_from(env(&ALL[2..])), Some("/h/.cache/strand".into()));
        assert_eq!(dir_from(env(&[])), None);
    }
}
