//! The lengths of the sequences a run would read, as cheaply as they can
//! be known: from a FASTA's `.fai` index (or the regions asked for), else
//! by reading the file once (a FASTA without an index, a BAM's reads), and
//! not at all from stdin, which only the run itself may read.

use std::path::Path;

use anyhow::Result;
use strand_io::faidx::IndexedFasta;

use crate::input::{Input, InputArgs};

/// The sequences of an input: their lengths in input order (`None` when
/// they cannot be known before the run) and how they were counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lengths {
    pub lengths: Option<Vec<u64>>,
    pub how: String,
}

impl Lengths {
    fn stdin() -> Lengths {
        Lengths {
            lengths: None,
            how: "stdin (read by the run only)".into(),
        }
    }

    /// The number of sequences and their bases, when known.
    pub fn totals(&self) -> Option<(u64, u64)> {
        self.lengths
            .as_ref()
            .map(|l| (l.len() as u64, l.iter().sum()))
    }
}

/// The sequences of a command's input options (regions, whole contigs,
/// records or reads).
pub fn of_input(input: &InputArgs) -> Result<Lengths> {
    if input.bam.is_none() && input.input.as_deref() == Some(Path::new("-")) {
        return Ok(Lengths::stdin());
    }
    let opened = input.open()?;
    let how = match (&opened, input.input.as_deref(), input.bam.as_deref()) {
        (Input::Indexed { .. }, Some(p), _) => {
            if input.region.regions.is_empty() && input.region.regions_file.is_none() {
                format!("{}: contigs from its .fai index", p.display())
            } else {
                format!("{}: regions resolved with its .fai index", p.display())
            }
        }
        (Input::Bam { .. }, _, Some(b)) => format!("{}: reads, read once", b.display()),
        (_, Some(p), _) => format!("{}: records, read once (no .fai index)", p.display()),
        _ => String::new(),
    };
    Ok(Lengths {
        lengths: Some(opened.lengths()?),
        how,
    })
}

/// The records of a FASTA/FASTQ file that is read whole (`strand-classify
/// train` and `eval`): from its `.fai` index if it has one, else read once.
pub fn of_file(path: &Path) -> Result<Lengths> {
    if path == Path::new("-") {
        return Ok(Lengths::stdin());
    }
    let mut fai = path.as_os_str().to_owned();
    fai.push(".fai");
    if Path::new(&fai).is_file() {
        let fasta = IndexedFasta::open(path)?;
        return Ok(Lengths {
            lengths: Some(fasta.contigs().into_iter().map(|(_, l)| l).collect()),
            how: format!("{}: records from its .fai index", path.display()),
        });
    }
    let lengths = strand_io::Reader::from_path(path)?
        .map(|r| Ok(r?.seq.len() as u64))
        .collect::<Result<Vec<u64>>>()?;
    Ok(Lengths {
        lengths: Some(lengths),
        how: format!("{}: records, read once (no .fai index)", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        input: InputArgs,
    }

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn lengths(argv: &[&str]) -> Lengths {
        let cli =
            Cli::try_parse_from(std::iter::once("x").chain(argv.iter().copied())).expect("parses");
        of_input(&cli.input).expect("counted")
    }

    #[test]
    fn an_index_gives_the_lengths() {
        let fa = root().join("test-data/genome/ref.fa");
        let fa = fa.to_str().expect("utf-8");
        let whole = lengths(&[fa]);
        assert!(whole.how.contains(".fai"), "{}", whole.how);
        let n = whole.lengths.as_ref().expect("known").len();
        assert!(n >= 2, "{whole:?}");
        let region = lengths(&[fa, "-r", "chrA:101-300"]);
        assert_eq!(region.lengths, Some(vec![200]));
        assert_eq!(region.totals(), Some((1, 200)));
        // The same file read record by record gives the same lengths.
        assert_eq!(of_file(Path::new(fa)).expect("read").lengths, whole.lengths);
    }

    #[test]
    fn a_stream_is_read_and_stdin_is_not() {
        let fa = root().join("test-data/sequences.fa");
        let read = lengths(&[fa.to_str().expect("utf-8")]);
        assert!(read.how.contains("read once"), "{}", read.how);
        assert!(!read.lengths.expect("known").is_empty());
        assert_eq!(lengths(&["-"]).lengths, None);
        assert_eq!(of_file(Path::new("-")).expect("stdin").lengths, None);
    }
}
