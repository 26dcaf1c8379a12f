//! `--layer`: a record's output per layer.
//!
//! With other layers than the final one, each record gives one output per
//! layer asked for, named `<name>.layer<N>` (a tensor, or a file in
//! `--out-dir`) with the layer in its coordinates metadata. Windows arrive
//! in order and every layer's rows of a window at once, but a sink writes
//! one output at a time, start to end: so the first layer's rows stream
//! straight to the sink, and the other layers' (pooled) rows wait in a
//! spool, in memory up to [`SPOOL_MEMORY`] and then in an anonymous
//! temporary file (in `$TMPDIR`), until the record's last window; then each
//! follows in turn. Memory stays bounded whatever the record's length.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result};

use super::output::{Meta, Sink};
use super::pool::{Pool, Pooler};

/// Floats a spool holds in memory before it moves to a temporary file.
const SPOOL_MEMORY: usize = 16 << 20;

/// The outputs of a record: `meta` itself for the default (final) layer,
/// else one per layer, in order, named `<name>.layer<N>`.
pub fn metas(meta: &Meta, layers: Option<&[usize]>) -> Vec<Meta> {
    match layers {
        None => vec![meta.clone()],
        Some(layers) => layers
            .iter()
            .map(|&n| Meta {
                name: format!("{}.layer{n}", meta.name),
                layer: Some(n),
                ..meta.clone()
            })
            .collect(),
    }
}

/// One record's outputs while its windows come in.
pub struct Outputs {
    metas: Vec<Meta>,
    poolers: Vec<Pooler>,
    /// The rows of output `j + 1`, waiting for output 0 to end.
    spools: Vec<Spool>,
}

impl Outputs {
    /// Begins the first output of a record whose outputs are `metas`.
    pub fn begin(sink: &mut dyn Sink, metas: Vec<Meta>, pool: Pool) -> Result<Outputs> {
        sink.begin(&metas[0])?;
        Ok(Outputs {
            poolers: metas.iter().map(|m| Pooler::new(pool, m.cols)).collect(),
            spools: (1..metas.len()).map(|_| Spool::default()).collect(),
            metas,
        })
    }

    /// Output `j`'s kept rows of one window; `last`: the record's last.
    pub fn push(&mut self, sink: &mut dyn Sink, j: usize, rows: &[f32], last: bool) -> Result<()> {
        let pooler = &mut self.poolers[j];
        pooler.push(rows);
        let out = if last { pooler.finish() } else { pooler.take() };
        match j {
            0 => sink.write(&out),
            _ => self.spools[j - 1].push(&out),
        }
    }

    /// Ends the first output, then writes each other one from its spool.
    pub fn end(self, sink: &mut dyn Sink) -> Result<()> {
        sink.end()?;
        for (meta, spool) in self.metas[1..].iter().zip(self.spools) {
            sink.begin(meta)?;
            spool.replay(meta.cols, |rows| sink.write(rows))?;
            sink.end()?;
        }
        Ok(())
    }
}

/// Rows waiting for their turn: in memory, then in a temporary file.
#[derive(Default)]
struct Spool {
    mem: Vec<f32>,
    file: Option<BufWriter<File>>,
}

impl Spool {
    fn push(&mut self, rows: &[f32]) -> Result<()> {
        if self.file.is_none() && self.mem.len() + rows.len() <= SPOOL_MEMORY {
            self.mem.extend_from_slice(rows);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = tempfile::tempfile().context("creating a spool file in $TMPDIR")?;
                let mut f = BufWriter::with_capacity(1 << 20, f);
                write_f32(&mut f, &std::mem::take(&mut self.mem))?;
                self.file.insert(f)
            }
        };
        write_f32(file, rows)
    }

    /// Hands the rows back in order, whole rows of `cols` at a time.
    fn replay(self, cols: usize, mut f: impl FnMut(&[f32]) -> Result<()>) -> Result<()> {
        let Some(file) = self.file else {
            return f(&self.mem);
        };
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut bytes = vec![0u8; cols.max(1) * 4 * 4096];
        let mut rows = Vec::with_capacity(bytes.len() / 4);
        loop {
            let n = read_full(&mut reader, &mut bytes)?;
            if n == 0 {
                return Ok(());
            }
            rows.clear();
            rows.extend(
                bytes[..n]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            );
            f(&rows)?;
        }
    }
}

fn write_f32(w: &mut impl Write, values: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    w.write_all(&bytes)
        .context("writing a spool file in $TMPDIR")
}

/// Fills `buf` unless the end comes first; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).context("reading a spool file")? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what a sink is given.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Sink for Log {
        fn skip(&mut self, m: &Meta) -> Result<()> {
            self.0.push(format!("skip {}", m.name));
            Ok(())
        }
        fn begin(&mut self, m: &Meta) -> Result<()> {
            self.0.push(format!("begin {} {:?}", m.name, m.layer));
            Ok(())
        }
        fn write(&mut self, rows: &[f32]) -> Result<()> {
            assert_eq!(rows.len() % 2, 0, "whole rows");
            self.0.push(format!("write {rows:?}"));
            Ok(())
        }
        fn end(&mut self) -> Result<()> {
            self.0.push("end".into());
            Ok(())
        }
        fn finish(self: Box<Self>) -> Result<()> {
            Ok(())
        }
    }

    fn meta() -> Meta {
        Meta {
            name: "r".into(),
            what: "test".into(),
            contig: "r".into(),
            start: 0,
            end: 2,
            tokens: 2,
            pool: Pool::None,
            cols: 2,
            layer: None,
        }
    }

    #[test]
    fn names_carry_the_layer_unless_default() {
        let m = meta();
        let one = metas(&m, None);
        assert_eq!((one[0].name.as_str(), one[0].layer), ("r", None));
        let two = metas(&m, Some(&[0, 8]));
        let names: Vec<(&str, Option<usize>)> =
            two.iter().map(|m| (m.name.as_str(), m.layer)).collect();
        assert_eq!(names, [("r.layer0", Some(0)), ("r.layer8", Some(8))]);
    }

    #[test]
    fn later_layers_follow_the_first_in_order() {
        let mut log = Log::default();
        let mut item = Outputs::begin(&mut log, metas(&meta(), Some(&[1, 2])), Pool::None).unwrap();
        // Two windows of one row each.
        item.push(&mut log, 0, &[1.0, 1.0], false).unwrap();
        item.push(&mut log, 1, &[2.0, 2.0], false).unwrap();
        item.push(&mut log, 0, &[3.0, 3.0], true).unwrap();
        item.push(&mut log, 1, &[4.0, 4.0], true).unwrap();
        item.end(&mut log).unwrap();
        assert_eq!(
            log.0,
            [
                "begin r.layer1 Some(1)",
                "write [1.0, 1.0]",
                "write [3.0, 3.0]",
                "end",
                "begin r.layer2 Some(2)",
                "write [2.0, 2.0, 4.0, 4.0]",
                "end"
            ]
        );
    }

    #[test]
    fn a_spool_moves_to_a_file_and_replays_whole_rows() {
        let mut s = Spool::default();
        let row: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let rows = SPOOL_MEMORY / 1000 + 10;
        for _ in 0..rows {
            s.push(&row).unwrap();
        }
        assert!(s.file.is_some() && s.mem.is_empty());
        let mut got = 0usize;
        s.replay(1000, |chunk| {
            assert_eq!(chunk.len() % 1000, 0);
            for r in chunk.chunks_exact(1000) {
                assert_eq!(r, &row[..]);
                got += 1;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(got, rows);
    }
}
