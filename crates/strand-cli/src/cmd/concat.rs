//! `strand concat`: joins the VCF outputs of sharded or per-chromosome
//! `strand-score` runs into one VCF (BGZF with a `.tbi` index for `.gz`,
//! `.csi` when a record lies past 2^29; BCF with a `.csi` for `.bcf`).
//!
//! Parts are taken in the order given and must share their `#CHROM` line;
//! the header comes from the first part. For a sorted result, give the
//! parts in genome order (shards in shard order, chromosomes in reference
//! order), as `bcftools concat` expects too.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use strand_io::vcf::{Options, Reader, Writer};

use crate::args::{OutputFile, VcfOutArgs};

/// Concatenate VCFs with the same samples into one.
#[derive(ClapArgs, Debug)]
#[command(mut_arg("output", |a| a.help(
    "Output: .gz for BGZF with a .tbi (or .csi) index, .bcf for BCF with a .csi index; - for \
     plain VCF on stdout [default: -]"
)))]
pub struct Args {
    /// VCFs to join, in order (plain, gzip or BGZF VCF, or BCF)
    #[arg(value_name = "VCF", required = true)]
    pub parts: Vec<PathBuf>,

    #[command(flatten)]
    pub output: OutputFile,

    #[command(flatten)]
    pub output_format: VcfOutArgs,
}

/// `strand concat`'s options after [`Args::validate`].
#[derive(Debug)]
pub struct Settings {
    pub parts: Vec<PathBuf>,
    /// `-o`, `-` (stdout) when not given.
    pub output: PathBuf,
    /// How it is written (`-O`, `-W` and its name).
    pub options: Options,
}

impl Args {
    /// Refuses, before any work, an output type or index that cannot be
    /// written (a usage error, exit 2) and outputs that are inputs.
    pub fn validate(self) -> Result<Settings> {
        let output = self.output.or_stdout();
        let options = self.output_format.options(&output);
        let mut inputs = Vec::new();
        for part in &self.parts {
            inputs.extend(crate::args::with_indexes(part));
        }
        let outputs = self.output_format.outputs(&output);
        let outputs: Vec<&std::path::Path> = outputs.iter().map(|p| p.as_path()).collect();
        crate::args::check_outputs(&outputs, &inputs)?;
        Ok(Settings {
            parts: self.parts,
            output,
            options,
        })
    }
}

/// Joins with settings checked by [`Args::validate`].
pub fn run(args: Settings) -> Result<()> {
    let mut out = Writer::create_with(&args.output, args.options)?;
    let mut columns: Option<(String, String)> = None;
    for part in &args.parts {
        let mut r = Reader::open(part)?;
        match &columns {
            None => {
                for m in &r.meta {
                    out.header_line(m)?;
                }
                out.header_line(&r.columns)?;
                columns = Some((r.columns.clone(), r.display_name().to_string()));
            }
            Some((c, first)) if *c != r.columns => bail!(
                "{}: its #CHROM line (samples) differs from that of {first}",
                r.display_name()
            ),
            Some(_) => {}
        }
        while let Some(rec) = r.next_record() {
            out.record(&rec?)?;
        }
    }
    out.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// `strand concat`'s options as the subcommand parses them.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn validate(argv: &[&str]) -> Result<Settings> {
        let argv = std::iter::once("concat").chain(argv.iter().copied());
        Cli::try_parse_from(argv)?.args.validate()
    }

    #[test]
    fn stdout_unless_told() {
        Cli::command().debug_assert();
        let s = validate(&["a.vcf", "b.vcf"]).expect("ok");
        assert_eq!(s.output, PathBuf::from("-"));
        assert_eq!(s.parts.len(), 2);
        let s = validate(&["-o", "all.vcf.gz", "a.vcf"]).expect("ok");
        assert_eq!(s.output, PathBuf::from("all.vcf.gz"));
        assert!(validate(&["-o", "x.vcf"]).is_err(), "no parts");
    }

    #[test]
    fn a_part_is_not_the_output() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let part = tmp.path().join("a.vcf");
        std::fs::write(&part, "##fileformat=VCFv4.2\n").expect("write");
        let part = part.to_string_lossy();
        let e = validate(&["-o", &part, &part]).expect_err("refused");
        assert!(e.to_string().contains("same file as input"), "{e}");
    }
}
