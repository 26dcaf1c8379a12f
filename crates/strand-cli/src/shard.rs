//! `--shard I/N`: a deterministic share of the records for one task of a
//! job array.
//!
//! Records (or regions, or reads) are split into N contiguous runs in
//! input order, balanced by bases: a record goes to the shard in which the
//! middle of its bases falls when the input's bases are laid end to end
//! and cut into N equal parts. Contiguous runs keep input order, so the
//! shards' outputs concatenated in shard order are the unsharded output;
//! balancing by bases keeps a genome's shards of similar size although
//! chromosomes are not. A record is never split between shards: to spread
//! one chromosome over tasks, give each task regions (`-R`).

use std::fmt;
use std::str::FromStr;

/// Most shards a job may be split into: far more than any job array, and
/// small enough that shard arithmetic (`index × records`) cannot overflow.
pub const MAX_SHARDS: u64 = 1_000_000;

/// `--shard I/N`, the same flag on every command that reads many records.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ShardArgs {
    /// Take shard I of N for a job array: a contiguous 1/N of the input's
    /// records (balanced by bases; a VCF's by count); the shards' outputs
    /// concatenate, in shard order, into the unsharded output
    #[arg(long = "shard", value_name = "I/N", help_heading = "Jobs")]
    pub shard: Option<Shard>,
}

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Which of the records, given their lengths in input order, belong to
    /// this shard.
    pub fn select(&self, lengths: &[u64]) -> Vec<bool> {
        let total: u128 = lengths.iter().map(|&l| u128::from(l)).sum::<u128>().max(1);
        let n = u128::from(self.count);
        let mut before = 0u128;
        lengths
            .iter()
            .map(|&len| {
                // Twice the middle, to stay in integers.
                let mid2 = 2 * before + u128::from(len);
                before += u128::from(len);
                let shard = (mid2 * n / (2 * total)).min(n - 1);
                shard + 1 == u128::from(self.index)
            })
            .collect()
    }

    /// Whether this is the first shard (which writes table headers).
    pub fn is_first(&self) -> bool {
        self.index == 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected I/N with 1 <= I <= N <= {MAX_SHARDS}, e.g. 3/10");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_records_in_order() {
        let lengths = [
            248u64, 242, 198, 190, 181, 171, 159, 145, 138, 134, 1, 1, 57,
        ];
        for count in 1..=16 {
            let picks: Vec<Vec<bool>> = (1..=count)
                .map(|index| Shard { index, count }.select(&lengths))
                .collect();
            let mut last_shard = 0;
            for r in 0..lengths.len() {
                let owners: Vec<usize> = (0..picks.len()).filter(|&s| picks[s][r]).collect();
                assert_eq!(owners.len(), 1, "record {r} has exactly one shard");
                assert!(owners[0] >= last_shard, "contiguous, in order");
                last_shard = owners[0];
            }
        }
    }

    #[test]
    fn shards_balance_bases() {
        let lengths = vec![100u64; 40];
        let s = Shard { index: 2, count: 4 }.select(&lengths);
        assert_eq!(s.iter().filter(|&&x| x).count(), 10);
        assert!(s[10..20].iter().all(|&x| x));
    }

    #[test]
    fn parses() {
        assert_eq!(
            "3/10".parse::<Shard>(),
            Ok(Shard {
                index: 3,
                count: 10
            })
        );
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("3".parse::<Shard>().is_err());
    }
}
