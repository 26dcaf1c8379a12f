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
use strand_io::vcf::{Reader, Writer};

use crate::args::VcfOutArgs;

/// Concatenate VCFs with the same samples into one.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// VCFs to join, in order (plain, gzip or BGZF VCF, or BCF)
    #[arg(value_name = "VCF", required = true)]
    pub parts: Vec<PathBuf>,

    /// Output: .gz for BGZF with a .tbi (or .csi) index, .bcf for BCF with
    /// a .csi index; - for plain VCF on stdout
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "-",
        help_heading = "Output"
    )]
    pub output: PathBuf,

    #[command(flatten)]
    pub output_format: VcfOutArgs,
}

pub fn run(args: Args) -> Result<()> {
    let mut inputs = Vec::new();
    for part in &args.parts {
        inputs.extend(crate::args::with_indexes(part));
    }
    let outputs = args.output_format.outputs(&args.output);
    let outputs: Vec<&std::path::Path> = outputs.iter().map(|p| p.as_path()).collect();
    crate::args::check_outputs(&outputs, &inputs)?;
    let mut out = Writer::create_with(&args.output, args.output_format.options(&args.output))?;
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
