//! What a VCF allele is, and which reference window scores it.

use strand_io::windows::Tiling;

/// The scores a run computes (`--scores`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Score {
    /// logit[ALT] − logit[REF] at the variant, reference window, no mask.
    Llr,
    /// The same with the variant's position replaced by [MASK].
    #[value(name = "llr_masked")]
    LlrMasked,
    /// Cosine distance of mean-pooled embeddings of the reference and
    /// alternate windows (and, as `embed_dist_l2`, the L2 distance of the
    /// rows at the variant's first base).
    #[value(name = "embed_dist")]
    EmbedDist,
}

impl Score {
    /// Whether the score has a value for SNVs only (the model's logits
    /// compare one base with another at one position).
    pub fn snv_only(self) -> bool {
        matches!(self, Score::Llr | Score::LlrMasked)
    }

    /// TSV column names this score fills.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Score::Llr => &["llr"],
            Score::LlrMasked => &["llr_masked"],
            Score::EmbedDist => &["embed_dist", "embed_dist_l2"],
        }
    }
}

/// The kind of one ALT allele against its REF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Snv,
    /// Equal-length substitution of several bases.
    Mnv,
    Indel,
}

/// Why an allele has no value, with what it means: the one list behind
/// the VCF's FILTER values (`strand_<reason>`), INFO `STRAND_FILTER` and
/// `STRAND_SKIP`, the TSV's `reason` column and the summary, in both modes
/// (`ism` applies [`classify`] to every SNV of its region too).
pub const REASONS: &[Reason] = &[
    Reason::record("missing_contig", "the contig is not in the reference"),
    Reason::record("ref_mismatch", "REF differs from the reference"),
    Reason::record(
        "off_contig",
        "REF runs past the contig end (a VCF of another assembly?)",
    ),
    Reason::allele("symbolic", "symbolic or breakend ALT"),
    Reason::allele("spanning_deletion", "ALT is * (an upstream deletion)"),
    Reason::allele("no_alt", "no ALT allele (ALT is .)"),
    Reason::allele(
        "non_acgt",
        "REF or ALT has a base other than A, C, G and T (such as N)",
    ),
    Reason::allele("alt_equals_ref", "ALT equals REF"),
    Reason::allele(
        "not_snv",
        "an indel or MNV, and every requested score is for SNVs only",
    ),
];

/// Why a record or an allele has no value.
pub struct Reason {
    pub id: &'static str,
    pub what: &'static str,
    /// Said of the whole record (INFO `STRAND_FILTER`), not per ALT.
    pub whole_record: bool,
}

impl Reason {
    const fn record(id: &'static str, what: &'static str) -> Reason {
        Reason {
            id,
            what,
            whole_record: true,
        }
    }

    const fn allele(id: &'static str, what: &'static str) -> Reason {
        Reason {
            id,
            what,
            whole_record: false,
        }
    }
}

/// Classifies `alt` against `reference`, or says why it cannot be scored
/// (one of [`REASONS`]). A base other than A, C, G or T has no token the
/// model was trained to score: an N in REF would be scored against a
/// context of Ns, so it is refused like ism refuses such positions.
pub fn classify(reference: &str, alt: &str) -> Result<Kind, &'static str> {
    if alt == "*" {
        return Err("spanning_deletion");
    }
    if alt.starts_with('<') || alt.contains('[') || alt.contains(']') {
        return Err("symbolic");
    }
    if alt == "." || alt.is_empty() {
        return Err("no_alt");
    }
    let acgt = |s: &str| s.bytes().all(|b| b"ACGTacgt".contains(&b));
    if !acgt(reference) || !acgt(alt) {
        return Err("non_acgt");
    }
    if alt.eq_ignore_ascii_case(reference) {
        return Err("alt_equals_ref");
    }
    Ok(match (reference.len(), alt.len()) {
        (1, 1) => Kind::Snv,
        (r, a) if r == a => Kind::Mnv,
        _ => Kind::Indel,
    })
}

/// A reference window: `[start, end)` on a contig.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

/// How variants are placed in windows: a fixed grid of half-overlapping
/// `window`-base windows, or one window centred on each variant (see
/// [`WindowGrid::window_of`]).
#[derive(Debug, Clone, Copy)]
pub struct WindowGrid {
    pub window: u64,
    /// Every variant in its own window, centred on it.
    pub centred: bool,
}

impl WindowGrid {
    /// The window scoring a variant whose REF covers `[pos, pos + ref_len)`
    /// on a contig of `len` bases.
    ///
    /// By default windows come from a fixed grid (windows of `window` bases
    /// every `window / 2`, the last one ending at the contig's end) and a
    /// variant goes to the grid window where it is closest to the centre:
    /// it has at least a quarter window of context on each side (less only
    /// near the contig's ends), and all variants near each other share one
    /// forward pass. `centred` gives each position its own window, centred
    /// on it and moved inwards at contig ends. Windows never go past the
    /// contig: a contig shorter than the window is one window.
    pub fn window_of(&self, len: u64, pos: u64, ref_len: u64) -> Window {
        let w = self.window.min(len);
        if !self.centred {
            let tiling = Tiling::new(w, w / 2).expect("overlap below window");
            let step = (w - w / 2).max(1);
            let guess = (pos / step).saturating_sub(1);
            let n = tiling.count(len);
            for k in guess..n {
                let t = tiling.tile(len, k);
                if (t.keep_start..t.keep_end).contains(&pos) {
                    if pos + ref_len <= t.end {
                        return Window {
                            start: t.start,
                            end: t.end,
                        };
                    }
                    break;
                }
            }
        }
        let start = pos.saturating_sub(w / 2).min(len - w);
        Window {
            start,
            end: start + w,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alleles_are_classified() {
        assert_eq!(classify("A", "G"), Ok(Kind::Snv));
        assert_eq!(classify("a", "G"), Ok(Kind::Snv));
        assert_eq!(classify("AC", "GT"), Ok(Kind::Mnv));
        assert_eq!(classify("AC", "A"), Ok(Kind::Indel));
        assert_eq!(classify("A", "<DEL>"), Err("symbolic"));
        assert_eq!(classify("A", "A]chr2:5]"), Err("symbolic"));
        assert_eq!(classify("A", "*"), Err("spanning_deletion"));
        assert_eq!(classify("A", "a"), Err("alt_equals_ref"));
        // N in REF or ALT, or any other letter, is not scored.
        assert_eq!(classify("N", "A"), Err("non_acgt"));
        assert_eq!(classify("AN", "A"), Err("non_acgt"));
        assert_eq!(classify("A", "R"), Err("non_acgt"));
        assert_eq!(classify("n", "n"), Err("non_acgt"));
        for (r, a) in [("A", "<DEL>"), ("N", "C"), ("A", "*"), ("A", "A")] {
            let why = classify(r, a).unwrap_err();
            assert!(REASONS.iter().any(|r| r.id == why), "{why}");
        }
    }

    #[test]
    fn grid_windows_keep_variants_central() {
        let p = WindowGrid {
            window: 1000,
            centred: false,
        };
        for pos in (0..10_000).step_by(37) {
            let w = p.window_of(10_000, pos, 1);
            assert!(w.start <= pos && pos < w.end && w.end - w.start == 1000);
            if (250..9750).contains(&pos) {
                assert!(pos - w.start >= 250 && w.end - pos >= 250, "{pos}: {w:?}");
            }
        }
        // Neighbours share a window.
        assert_eq!(p.window_of(10_000, 3100, 1), p.window_of(10_000, 3200, 1));
        // A short contig is one window.
        assert_eq!(p.window_of(300, 7, 1), Window { start: 0, end: 300 });
    }

    #[test]
    fn centred_windows_move_inwards_at_contig_ends() {
        let p = WindowGrid {
            window: 100,
            centred: true,
        };
        assert_eq!(
            p.window_of(1000, 500, 1),
            Window {
                start: 450,
                end: 550
            }
        );
        assert_eq!(p.window_of(1000, 3, 1), Window { start: 0, end: 100 });
        assert_eq!(
            p.window_of(1000, 990, 1),
            Window {
                start: 900,
                end: 1000
            }
        );
    }
}
