//! Turning a record's per-base rows into the rows that are stored.
//!
//! Rows arrive in order, a window's kept rows at a time, so pooling keeps
//! only the running sums of the current bin: memory does not grow with the
//! record.

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

use crate::args::MAX_BASES;

/// How rows are pooled along the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// One row per token.
    None,
    /// One row: the mean over the record.
    Mean,
    /// The mean over each run of `N` bases from the record's start; the
    /// last bin holds the remainder and may be shorter.
    Bin(u64),
}

impl Pool {
    /// Rows stored for a record of `rows` input rows.
    pub fn out_rows(self, rows: u64) -> u64 {
        match self {
            Pool::None => rows,
            Pool::Mean => 1,
            Pool::Bin(n) => rows.div_ceil(n),
        }
    }

    /// Bases covered by each stored row, for coordinates (`rows` per
    /// record for `mean`, 1 for `none`).
    pub fn bin_len(self, rows: u64) -> u64 {
        match self {
            Pool::None => 1,
            Pool::Mean => rows,
            Pool::Bin(n) => n,
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pool::None => f.write_str("none"),
            Pool::Mean => f.write_str("mean"),
            Pool::Bin(n) => write!(f, "bin:{n}"),
        }
    }
}

impl FromStr for Pool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Pool::None),
            "mean" => Ok(Pool::Mean),
            _ => match s
                .strip_prefix("bin:")
                .map(|n| n.replace(',', "").parse::<u64>())
            {
                // Bounded so `n × width` (a bin's floats) cannot overflow.
                Some(Ok(n)) if n > 0 && n <= MAX_BASES => Ok(Pool::Bin(n)),
                _ => Err(format!(
                    "{s:?}: expected none, mean or bin:N with N from 1 to {MAX_BASES} bases"
                )),
            },
        }
    }
}

/// Column means of a bin of rows, summed in f64.
fn mean_into(bin: &[f32], cols: usize, out: &mut [f32]) {
    let mut sum = vec![0.0f64; cols];
    for row in bin.chunks_exact(cols) {
        sum.iter_mut()
            .zip(row)
            .for_each(|(s, &x)| *s += f64::from(x));
    }
    let n = (bin.len() / cols) as f64;
    out.iter_mut()
        .zip(sum)
        .for_each(|(o, s)| *o = (s / n) as f32);
}

/// Pools one record's rows as they arrive and hands finished rows on.
pub struct Pooler {
    pool: Pool,
    cols: usize,
    /// Sums of the current bin, in f64 so long bins lose nothing.
    sum: Vec<f64>,
    /// Rows in the current bin.
    count: u64,
    /// Finished rows not yet taken.
    out: Vec<f32>,
}

impl Pooler {
    pub fn new(pool: Pool, cols: usize) -> Pooler {
        Pooler {
            pool,
            cols,
            sum: vec![0.0; cols],
            count: 0,
            out: Vec::new(),
        }
    }

    /// Adds consecutive rows (`rows.len()` a multiple of the width).
    pub fn push(&mut self, rows: &[f32]) {
        let limit = match self.pool {
            Pool::None => {
                self.out.extend_from_slice(rows);
                return;
            }
            Pool::Mean => u64::MAX,
            Pool::Bin(n) => n,
        };
        let cols = self.cols;
        let mut rows = rows;
        // Finish the bin in progress row by row...
        while matches!(self.pool, Pool::Bin(_)) && self.count > 0 && !rows.is_empty() {
            self.add_row(&rows[..cols]);
            rows = &rows[cols..];
            if self.count == limit {
                self.flush_bin();
            }
        }
        // ... then whole bins (or, for the mean, all rows) in parallel:
        // a window holds 10^5 rows and this runs while the device waits.
        match self.pool {
            Pool::Bin(n) => {
                let bin = n as usize * cols;
                let whole = rows.len() / bin * bin;
                let start = self.out.len();
                self.out.resize(start + whole / n as usize, 0.0);
                self.out[start..]
                    .par_chunks_mut(cols)
                    .zip(rows[..whole].par_chunks_exact(bin))
                    .for_each(|(o, b)| mean_into(b, cols, o));
                rows = &rows[whole..];
            }
            Pool::Mean => {
                let sum = rows
                    .par_chunks(4096 * cols)
                    .map(|c| {
                        let mut s = vec![0.0f64; cols];
                        for row in c.chunks_exact(cols) {
                            s.iter_mut().zip(row).for_each(|(s, &x)| *s += f64::from(x));
                        }
                        s
                    })
                    .reduce(
                        || vec![0.0f64; cols],
                        |mut a, b| {
                            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                            a
                        },
                    );
                self.sum.iter_mut().zip(sum).for_each(|(s, x)| *s += x);
                self.count += (rows.len() / cols) as u64;
                rows = &[];
            }
            Pool::None => unreachable!("handled above"),
        }
        for row in rows.chunks_exact(cols) {
            self.add_row(row);
        }
    }

    fn add_row(&mut self, row: &[f32]) {
        for (s, &x) in self.sum.iter_mut().zip(row) {
            *s += f64::from(x);
        }
        self.count += 1;
    }

    fn flush_bin(&mut self) {
        let n = self.count as f64;
        self.out.extend(self.sum.iter().map(|&s| (s / n) as f32));
        self.sum.iter_mut().for_each(|s| *s = 0.0);
        self.count = 0;
    }

    /// Takes the finished rows so far.
    pub fn take(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.out)
    }

    /// Ends the record: the last (possibly short) bin is finished.
    pub fn finish(&mut self) -> Vec<f32> {
        if self.count > 0 {
            self.flush_bin();
        }
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_pools() {
        assert_eq!("bin:1,000".parse::<Pool>(), Ok(Pool::Bin(1000)));
        assert_eq!("mean".parse::<Pool>(), Ok(Pool::Mean));
        assert!("bin:0".parse::<Pool>().is_err());
        assert!("max".parse::<Pool>().is_err());
        assert_eq!(Pool::Bin(128).to_string(), "bin:128");
        assert_eq!(Pool::Bin(128).out_rows(257), 3);
    }

    #[test]
    fn bins_are_means_whatever_the_pieces() {
        // 7 rows of width 2: row i = (i, -2i).
        let rows: Vec<f32> = (0..7).flat_map(|i| [i as f32, -2.0 * i as f32]).collect();
        let mut p = Pooler::new(Pool::Bin(3), 2);
        p.push(&rows[..4]);
        p.push(&rows[4..10]);
        let mut out = p.take();
        p.push(&rows[10..]);
        out.extend(p.finish());
        assert_eq!(out, vec![1.0, -2.0, 4.0, -8.0, 6.0, -12.0]);

        let mut m = Pooler::new(Pool::Mean, 2);
        m.push(&rows);
        assert_eq!(m.finish(), vec![3.0, -6.0]);
        // Pieces of every size, against the sums done naively.
        let w = 3;
        let rows: Vec<f32> = (0..101 * w).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        for pool in [
            Pool::Bin(1),
            Pool::Bin(4),
            Pool::Bin(7),
            Pool::Bin(200),
            Pool::Mean,
        ] {
            let mut p = Pooler::new(pool, w);
            let (mut at, mut piece, mut got) = (0, 1, Vec::new());
            while at < 101 {
                let end = (at + piece).min(101);
                p.push(&rows[at * w..end * w]);
                got.extend(p.take());
                at = end;
                piece = piece * 3 % 17 + 1;
            }
            got.extend(p.finish());
            let bin = match pool {
                Pool::Bin(n) => n as usize,
                _ => 101,
            };
            let want: Vec<f32> = rows
                .chunks(bin * w)
                .flat_map(|b| {
                    let n = (b.len() / w) as f64;
                    (0..w)
                        .map(|j| {
                            (b.iter()
                                .skip(j)
                                .step_by(w)
                                .map(|&x| f64::from(x))
                                .sum::<f64>()
                                / n) as f32
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(got, want, "{pool}");
        }

        let mut n = Pooler::new(Pool::None, 2);
        n.push(&rows);
        assert_eq!(n.finish(), rows);
    }
}
