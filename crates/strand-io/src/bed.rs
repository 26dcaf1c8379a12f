//! Regions from a BED file: `chrom start end [name ...]`, 0-based and
//! half-open, tab- or space-separated, plain or gzip/BGZF. Header lines
//! (`#`, `track`, `browser`) and blank lines are skipped; a name of `.` is
//! no name.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::Error;
use crate::region::Region;

/// Reads every region of the BED file at `path`, in file order (an empty
/// list when it has only header lines; callers decide whether that is
/// acceptable).
///
/// ```
/// # fn main() -> Result<(), strand_io::Error> {
/// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-data/genome/regions.bed");
/// let regions = strand_io::bed::read_bed(std::path::Path::new(path))?;
/// assert_eq!(regions[0].contig, "chrA");
/// assert_eq!((regions[0].start, regions[0].end), (3000, Some(4000)));
/// assert_eq!(regions[0].name.as_deref(), Some("fixture_len1000"));
/// # Ok(())
/// # }
/// ```
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
        let first_word = t.split_whitespace().next().unwrap_or("");
        if first_word.is_empty()
            || first_word.starts_with('#')
            || first_word == "track"
            || first_word == "browser"
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

    fn genome(file: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../test-data/genome"
        ))
        .join(file)
    }

    fn region(contig: &str, start: u64, end: u64, name: Option<&str>) -> Region {
        Region {
            contig: contig.into(),
            start,
            end: Some(end),
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn reads_the_committed_bed_plain_and_gzipped() {
        let want = vec![
            region("chrA", 3000, 4000, Some("fixture_len1000")),
            region("chrB", 100, 1300, Some("b_first")),
            region("chrB", 20000, 20500, None),
        ];
        assert_eq!(read_bed(&genome("regions.bed")).expect("read"), want);

        let dir = tempfile::tempdir().expect("tempdir");
        let gz = dir.path().join("regions.bed.gz");
        let text = std::fs::read(genome("regions.bed")).expect("read");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &text).expect("gzip");
        std::fs::write(&gz, enc.finish().expect("gzip")).expect("write");
        assert_eq!(read_bed(&gz).expect("read gz"), want);
    }

    #[test]
    fn file_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bed = dir.path().join("regions.bed");
        let mut text = std::fs::read_to_string(genome("regions.bed")).expect("read");
        text.push_str("track name=more\n\nchrA\t200\t100\tbackwards\n");
        std::fs::write(&bed, &text).expect("write");
        let e = read_bed(&bed).expect_err("bad line 7").to_string();
        assert_eq!(
            e,
            format!("{}: line 7: end 100 is before start 200", bed.display())
        );

        let missing = dir.path().join("absent.bed");
        let e = read_bed(&missing).expect_err("absent").to_string();
        assert!(
            e.starts_with(&format!("{}: cannot open", missing.display())),
            "{e}"
        );

        // A gzip stream cut short is reported at the line where it stopped.
        let gz = dir.path().join("cut.bed.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for i in 0..2000 {
            std::io::Write::write_all(&mut enc, format!("chrB\t{i}\t{}\n", i + 10).as_bytes())
                .expect("gzip");
        }
        let bytes = enc.finish().expect("gzip");
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).expect("write");
        let e = read_bed(&gz).expect_err("truncated").to_string();
        assert!(
            e.starts_with(&format!("{}: line ", gz.display())) && e.contains("read failed"),
            "{e}"
        );
    }

    #[test]
    fn only_whole_header_words_are_skipped() {
        let r = parse("r.bed", "browser position chr1\ntracks\t1\t2\n".as_bytes()).expect("valid");
        assert_eq!(r, vec![region("tracks", 1, 2, None)]);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, needle) in [
            ("chrA\t1\n", "r.bed: line 1: expected at least 3 columns"),
            ("#h\nchrA\t9\t5\n", "r.bed: line 2: end 5 is before start 9"),
            ("chrA\tx\t5\n", "start \"x\" is not a number"),
            ("chrA\t5\t5\n", "empty region"),
            (
                "#h\n\nchrA\t-1\t5\n",
                "r.bed: line 3: start \"-1\" is not a number",
            ),
        ] {
            let e = parse("r.bed", text.as_bytes()).expect_err(text).to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
