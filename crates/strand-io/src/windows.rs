//! Cutting long sequences into overlapping windows and stitching them.
//!
//! A sequence longer than the window is covered by windows of exactly
//! `window` bases that start every `window - overlap` bases; the last one
//! is moved left to end at the sequence's end, so every pass has the same
//! length (and a batch of them can run together) and nothing is padded.
//! Each base then takes its vector from the window in which it lies
//! farthest from an edge, because a bidirectional model sees the least
//! context near a window's ends. All windows have the same length, so
//! "farthest from an edge" is "closest to the window's centre", and the
//! hand-over between consecutive windows falls half way between their
//! centres (a tie goes to the earlier window).
//!
//! A sequence no longer than the window is one pass over the whole of it.

use std::fmt;

/// Window length and overlap, in bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    window: u64,
    overlap: u64,
}

/// One window of a sequence: bases `[start, end)` go through the model and
/// rows `[keep_start, keep_end)` (same coordinates) are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub start: u64,
    pub end: u64,
    pub keep_start: u64,
    pub keep_end: u64,
}

impl Tile {
    /// Bases in the window.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Always false: windows are never empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A window/overlap pair that cannot tile anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TilingError(String);

impl fmt::Display for TilingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TilingError {}

impl Tiling {
    /// Needs `window >= 1` and `overlap < window`.
    pub fn new(window: u64, overlap: u64) -> Result<Tiling, TilingError> {
        if window == 0 {
            return Err(TilingError("the window must be at least 1 base".into()));
        }
        if overlap >= window {
            return Err(TilingError(format!(
                "the overlap ({overlap}) must be smaller than the window ({window})"
            )));
        }
        Ok(Tiling { window, overlap })
    }

    pub fn window(&self) -> u64 {
        self.window
    }

    pub fn overlap(&self) -> u64 {
        self.overlap
    }

    /// Number of windows a sequence of `len` bases needs.
    pub fn count(&self, len: u64) -> u64 {
        if len <= self.window {
            return 1;
        }
        (len - self.window).div_ceil(self.window - self.overlap) + 1
    }

    /// The `k`-th of the [`count`](Tiling::count) windows of a sequence of
    /// `len` bases (0-based). Computed on its own, so a caller can walk a
    /// chromosome's windows without holding a list of them.
    pub fn tile(&self, len: u64, k: u64) -> Tile {
        let n = self.count(len);
        debug_assert!(k < n);
        if n == 1 {
            return Tile {
                start: 0,
                end: len,
                keep_start: 0,
                keep_end: len,
            };
        }
        let start = |k: u64| {
            if k + 1 == n {
                len - self.window
            } else {
                k * (self.window - self.overlap)
            }
        };
        // Base i goes to window k+1 once it is strictly closer to that
        // window's centre: i > (s_k + s_{k+1} + window - 1) / 2.
        let cut = |k: u64| (start(k) + start(k + 1) + self.window - 1) / 2 + 1;
        let s = start(k);
        Tile {
            start: s,
            end: s + self.window,
            keep_start: if k == 0 { 0 } else { cut(k - 1) },
            keep_end: if k + 1 == n { len } else { cut(k) },
        }
    }

    /// All windows of a sequence of `len` bases, in order.
    pub fn tiles(&self, len: u64) -> impl Iterator<Item = Tile> + '_ {
        (0..self.count(len)).map(move |k| self.tile(len, k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window a base should come from, by the definition: largest
    /// distance to the nearer edge, the earlier window on a tie.
    fn best(tiles: &[Tile], i: u64) -> usize {
        let mut best = (0, None);
        for (k, t) in tiles.iter().enumerate() {
            if (t.start..t.end).contains(&i) {
                let d = (i - t.start).min(t.end - 1 - i);
                if best.1.is_none_or(|b| d > b) {
                    best = (k, Some(d));
                }
            }
        }
        best.0
    }

    #[test]
    fn short_sequences_are_one_pass() {
        let t = Tiling::new(100, 10).expect("valid");
        assert_eq!(t.count(100), 1);
        assert_eq!(
            t.tiles(37).collect::<Vec<_>>(),
            vec![Tile {
                start: 0,
                end: 37,
                keep_start: 0,
                keep_end: 37
            }]
        );
    }

    #[test]
    fn every_base_comes_from_the_window_where_it_is_farthest_from_an_edge() {
        for window in [1u64, 2, 5, 8, 33] {
            for overlap in 0..window {
                let tiling = Tiling::new(window, overlap).expect("valid");
                for len in 1..(4 * window + 7) {
                    let tiles: Vec<Tile> = tiling.tiles(len).collect();
                    assert_eq!(tiles.len() as u64, tiling.count(len));
                    let mut next = 0;
                    for (k, t) in tiles.iter().enumerate() {
                        assert!(t.end <= len && t.len() == window.min(len));
                        assert_eq!(t.keep_start, next, "kept rows tile the sequence");
                        assert!(t.keep_start < t.keep_end, "no empty window");
                        assert!(t.start <= t.keep_start && t.keep_end <= t.end);
                        for i in t.keep_start..t.keep_end {
                            assert_eq!(
                                best(&tiles, i),
                                k,
                                "w {window} o {overlap} len {len} base {i}"
                            );
                        }
                        next = t.keep_end;
                    }
                    assert_eq!(next, len);
                }
            }
        }
    }

    #[test]
    fn default_like_tiling_of_a_chromosome() {
        let t = Tiling::new(131_072, 16_384).expect("valid");
        let len = 1_000_000;
        let tiles: Vec<Tile> = t.tiles(len).collect();
        assert_eq!(tiles.len(), 9);
        assert_eq!(tiles[1].start, 114_688);
        assert_eq!(tiles[8].end, len);
        // Every kept base is at least overlap/2 from its window's edges,
        // except at the sequence's own ends.
        for t in &tiles[1..] {
            assert!(t.keep_start - t.start >= 8_192);
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Tiling::new(0, 0).is_err());
        assert!(Tiling::new(10, 10).is_err());
    }
}
