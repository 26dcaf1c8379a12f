//! Regions from a BED file: `chrom start end [name ...]`, 0-based and
//! half-open, tab- or space-separated, plain or gzip/BGZF. Header lines
//! (`#`, `track`, `browser`) and blank lines are skipped; a name of `.` is
//! no name.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::Error;
use crate::region::Region;

/// Reads every region of the BED file at `path`, in file order.
pub fn read_bed(path: &Path) -> Result<Vec<Region>, Error> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| Error::Open {
        file: name.clone(),
        source,
    })?;
    let mut raw = BufReader::new(file);
    let gzip = raw
        .fill_buf()
        .map(|b| b.starts_with(&[0x1f, 0x8b]))
        .unwrap_or(false);
    let reader: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(raw)))
    } else {
        Box::new(raw)
    };
    parse(&name, reader)
}

fn parse(name: &str, reader: impl Read) -> Result<Vec<Region>, Error> {
    let mut regions = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let n = i + 1;
        let at = |message: String| Error::InvalidAt {
            file: name.to_owned(),
            at: format!("line {n}"),
            message,
        };
        let line = line.map_err(|e| at(format!("read failed: {e}")))?;
        let t = line.trim_end_matches('\r');
        if t.trim().is_empty()
            || t.starts_with('#')
            || t.starts_with("track")
            || t.starts_with("browser")
        {
            continue;
        }
        let fields: Vec<&str> = if t.contains('\t') {
            t.split('\t').collect()
        } else {
            t.split_whitespace().collect()
        };
        if fields.len() < 3 {
            return Err(at(format!(
                "expected at least 3 columns (chrom, start, end), found {}",
                fields.len()
            )));
        }
        let pos = |s: &str, what: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| at(format!("{what} {s:?} is not a number")))
        };
        let (start, end) = (pos(fields[1], "start")?, pos(fields[2], "end")?);
        if end < start {
            return Err(at(format!("end {end} is before start {start}")));
        }
        if end == start {
            return Err(at(format!("empty region (start = end = {start})")));
        }
        let label = fields
            .get(3)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty() && *s != ".");
        regions.push(Region {
            contig: fields[0].trim().to_owned(),
            start,
            end: Some(end),
            name: label.map(str::to_owned),
        });
    }
    Ok(regions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regions_names_and_skips_headers() {
        let text =
            "track name=x\n# comment\n\nchrA\t3000\t4000\tfixture\nchrB 10 20\nchrB\t5\t9\t.\n";
        let r = parse("r.bed", text.as_bytes()).expect("valid");
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            Region {
                contig: "chrA".into(),
                start: 3000,
                end: Some(4000),
                name: Some("fixture".into())
            }
        );
        assert_eq!(r[1].name, None);
        assert_eq!(r[2].name, None);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, needle) in [
            ("chrA\t1\n", "r.bed: line 1: expected at least 3 columns"),
            ("#h\nchrA\t9\t5\n", "r.bed: line 2: end 5 is before start 9"),
            ("chrA\tx\t5\n", "start \"x\" is not a number"),
            ("chrA\t5\t5\n", "empty region"),
        ] {
            let e = parse("r.bed", text.as_bytes()).expect_err(text).to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
