//! File names of records in `--out-dir` mode.

use sha2::{Digest, Sha256};

use super::output::Format;

/// Longest file name stem kept before a long name is cut and given a
/// hash: file systems allow 255 bytes per name, and the temporary file
/// adds `.` and `.strand-tmp.XXXXXX` (21 bytes) to the final name.
const MAX_STEM: usize = 180;

/// The file name of a record in directory mode: the name with `%` and
/// anything unsafe in file names percent-encoded, so distinct names give
/// distinct files in every shard.
pub fn file_name(name: &str, format: Format) -> String {
    let mut out = String::with_capacity(name.len() + 12);
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || "._-:+,=@".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    // "." and ".." are not files; a leading dot would hide the file.
    if out.starts_with('.') {
        out.replace_range(0..1, "%2E");
    }
    if out.len() > MAX_STEM {
        // Cut (never inside a %XX escape) and make it unique again with a
        // hash of the whole name; index.tsv and the tensor keep the name.
        let mut cut = MAX_STEM;
        if let Some(p) = out[cut.saturating_sub(2)..cut].find('%') {
            cut = cut - 2 + p;
        }
        let hash = Sha256::digest(name.as_bytes());
        let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
        out.truncate(cut);
        out.push('~');
        out.push_str(&hex);
    }
    format!("{out}.{}", format.ext())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: long names give short, distinct file names.
    #[test]
    fn issue15_long_names_are_cut_and_hashed() {
        let a = "x".repeat(300);
        let b = format!("{}y", "x".repeat(299));
        let (fa, fb) = (
            file_name(&a, Format::Safetensors),
            file_name(&b, Format::Safetensors),
        );
        assert_ne!(fa, fb);
        assert!(fa.len() <= MAX_STEM + 30, "{}", fa.len());
        assert!(fa.starts_with(&"x".repeat(MAX_STEM)) && fa.ends_with(".safetensors"));
        // Cut before an escape, not inside it.
        let c = format!("{}{}", "x".repeat(MAX_STEM - 1), " ".repeat(50));
        let fc = file_name(&c, Format::Npy);
        assert!(
            fc.starts_with(&format!("{}~", "x".repeat(MAX_STEM - 1))),
            "{fc}"
        );
        assert_eq!(file_name("short", Format::Npy), "short.npy");
    }
}
