//! Regions as users write them (samtools notation) and as they are used
//! (0-based, half-open spans checked against a contig).

use crate::error::Error;

/// A requested region: `contig`, or `contig:beg-end` (1-based, inclusive)
/// as written, held 0-based half-open. `end: None` runs to the contig's
/// end, which is only known once checked against an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Contig (chromosome) name.
    pub contig: String,
    /// First base, 0-based.
    pub start: u64,
    /// One past the last base, 0-based; `None`: the contig's end.
    pub end: Option<u64>,
    /// Output name (from a BED name column), if any.
    pub name: Option<String>,
}

impl Region {
    /// Parses `chr1`, `chr1:10,001-20,000`, `chr1:5000` or `chr1:5000-`
    /// (the last two: from base 5,000 to the contig's end). A contig name
    /// that itself contains `:` is taken whole when what follows its last
    /// `:` is not a range.
    ///
    /// ```
    /// use strand_io::region::Region;
    ///
    /// let r = Region::parse("chr1:10,001-20,000").unwrap();
    /// assert_eq!((r.contig.as_str(), r.start, r.end), ("chr1", 10_000, Some(20_000)));
    /// assert_eq!(Region::parse("chr1").unwrap().end, None);
    /// assert!(Region::parse("chr1:0-10").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Region, Error> {
        let bad = |message: &str| Error::InvalidRegion {
            text: text.to_owned(),
            message: message.to_owned(),
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(bad("empty"));
        }
        let Some((contig, range)) = t.rsplit_once(':') else {
            return Ok(Region::whole(t));
        };
        // `chr1:5000-abc` is a mistyped range, while `chrUn:KI270302v1` or
        // `HLA-A*01:01:01G` is a contig name with a `:` in it: a part that
        // starts with a digit or `-` and has a `-` is taken as a range (and
        // must then parse), as is one of only digits and commas.
        let digits_only = range.chars().all(|c| c.is_ascii_digit() || c == ',');
        let range_like =
            range.starts_with(|c: char| c.is_ascii_digit() || c == '-') && range.contains('-');
        if range.is_empty() || !(digits_only || range_like) {
            return Ok(Region::whole(t));
        }
        if contig.is_empty() {
            return Err(bad("no contig name before ':'"));
        }
        let number = |s: &str| -> Result<u64, Error> {
            let digits = s.replace(',', "");
            digits
                .parse::<u64>()
                .map_err(|_| bad(&format!("{s:?} is not a position")))
        };
        let (beg, end) = match range.split_once('-') {
            Some((b, "")) => (number(b)?, None),
            Some((b, e)) => (number(b)?, Some(number(e)?)),
            None => (number(range)?, None),
        };
        if beg == 0 {
            return Err(bad("positions are 1-based: the first base is 1"));
        }
        if let Some(e) = end {
            if e < beg {
                return Err(bad(&format!("end {e} is before start {beg}")));
            }
        }
        Ok(Region {
            contig: contig.to_owned(),
            start: beg - 1,
            end,
            name: None,
        })
    }

    fn whole(contig: &str) -> Region {
        Region {
            contig: contig.to_owned(),
            start: 0,
            end: None,
            name: None,
        }
    }

    /// The region in samtools notation, as the user would recognise it.
    pub fn label(&self) -> String {
        match self.end {
            Some(e) => format!("{}:{}-{}", self.contig, self.start + 1, e),
            None if self.start == 0 => self.contig.clone(),
            None => format!("{}:{}-", self.contig, self.start + 1),
        }
    }
}

/// A region checked against its contig: `[start, end)`, 0-based, not
/// empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Contig (chromosome) name.
    pub contig: String,
    /// First base, 0-based.
    pub start: u64,
    /// One past the last base, 0-based; `start < end <= contig length`.
    pub end: u64,
    /// Output name (from a BED name column), if any.
    pub name: Option<String>,
}

impl Span {
    /// Number of bases.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never true for a span from [`IndexedFasta::resolve`](crate::faidx::IndexedFasta::resolve).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// `chr1:10001-20000` (1-based, inclusive).
    pub fn label(&self) -> String {
        format!("{}:{}-{}", self.contig, self.start + 1, self.end)
    }

    /// The BED name when there is one, else [`label`](Span::label).
    pub fn output_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(contig: &str, start: u64, end: Option<u64>) -> Region {
        Region {
            contig: contig.into(),
            start,
            end,
            name: None,
        }
    }

    #[test]
    fn samtools_notation() {
        assert_eq!(
            Region::parse("chr1:10,001-20,000").expect("ok"),
            r("chr1", 10_000, Some(20_000))
        );
        assert_eq!(Region::parse("chrX").expect("ok"), r("chrX", 0, None));
        assert_eq!(
            Region::parse("chr2:5000").expect("ok"),
            r("chr2", 4999, None)
        );
        assert_eq!(
            Region::parse("chr2:5000-").expect("ok"),
            r("chr2", 4999, None)
        );
        assert_eq!(
            Region::parse("chr2:7-7").expect("ok"),
            r("chr2", 6, Some(7))
        );
        // A ':' followed by something other than a range is part of the name.
        assert_eq!(
            Region::parse("chrUn:KI270302v1").expect("ok"),
            r("chrUn:KI270302v1", 0, None)
        );
        assert_eq!(
            Region::parse("HLA-A*01:01:01G").expect("ok"),
            r("HLA-A*01:01:01G", 0, None)
        );
        assert_eq!(
            Region::parse(" chr1:1-1,000,000 ").expect("ok"),
            r("chr1", 0, Some(1_000_000))
        );
        assert_eq!(
            Region::parse("chr1:10,001-20,000").expect("ok").label(),
            "chr1:10001-20000"
        );
    }

    #[test]
    fn bad_regions_say_why() {
        for (text, needle) in [
            ("", "empty"),
            ("chr1:0-10", "1-based"),
            ("chr1:20-10", "end 10 is before start 20"),
            (":1-10", "no contig"),
            ("chr1:1-2-3", "not a position"),
            ("chr1:1,000-abc", "\"abc\" is not a position"),
            ("chr1:-5", "not a position"),
            ("   ", "empty"),
        ] {
            let e = Region::parse(text).expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.starts_with("region "), "{e}");
        }
    }

    #[test]
    fn span_names() {
        let s = Span {
            contig: "chrA".into(),
            start: 3000,
            end: 4000,
            name: None,
        };
        assert_eq!(s.output_name(), "chrA:3001-4000");
        assert_eq!(s.len(), 1000);
    }
}
