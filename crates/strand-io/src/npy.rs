//! Streaming writer of NumPy `.npy` arrays (format version 1.0).
//!
//! The file is a magic string, a version, a little-endian `u16` header
//! length and a Python-literal header dict (`descr`, `fortran_order`,
//! `shape`) padded so the data starts at a multiple of 64 bytes, then the
//! raw little-endian values in C order. The shape goes first, so it must be
//! known when the file is created; values then stream in any number of
//! pieces and memory use stays independent of the array's size. The file
//! appears under its name only once [`Writer::finish`] succeeds.
//!
//! NumPy has no bfloat16 type, so [`Dtype::Bf16`] is refused.

use std::io::Write;
use std::path::Path;

use crate::atomic::AtomicFile;
use crate::dtype::Dtype;
use crate::error::Error;

/// Writes one `.npy` file.
#[derive(Debug)]
pub struct Writer {
    out: AtomicFile,
    dtype: Dtype,
    /// Values still expected.
    remaining: u64,
    scratch: Vec<u8>,
}

impl Writer {
    /// Starts `path` holding an array of `shape` stored as `dtype`.
    pub fn create(path: &Path, dtype: Dtype, shape: &[usize]) -> Result<Writer, Error> {
        let descr = match dtype {
            Dtype::F32 => "<f4",
            Dtype::F16 => "<f2",
            Dtype::Bf16 => {
                return Err(Error::InvalidOutput {
                    file: path.display().to_string(),
                    message: "NumPy has no bfloat16 type: use --dtype f16 or f32, or \
                              --format safetensors"
                        .into(),
                })
            }
        };
        let mut out = AtomicFile::create(path)?;
        let header = header(descr, shape);
        out.write_all(&header).map_err(|e| out.write_error(e))?;
        Ok(Writer {
            out,
            dtype,
            remaining: shape.iter().map(|&d| d as u64).product(),
            scratch: Vec::new(),
        })
    }

    /// Appends values in C (row-major) order.
    pub fn write(&mut self, values: &[f32]) -> Result<(), Error> {
        if values.len() as u64 > self.remaining {
            return Err(Error::InvalidOutput {
                file: self.out.display_name().to_owned(),
                message: format!(
                    "{} values written, {} expected",
                    values.len(),
                    self.remaining
                ),
            });
        }
        self.remaining -= values.len() as u64;
        for block in values.chunks(16 * 1024) {
            self.scratch.clear();
            self.dtype.encode(block, &mut self.scratch);
            let written = self.out.write_all(&self.scratch);
            written.map_err(|e| self.out.write_error(e))?;
        }
        Ok(())
    }

    /// Commits the file; fails if values are missing.
    pub fn finish(self) -> Result<(), Error> {
        if self.remaining != 0 {
            return Err(Error::InvalidOutput {
                file: self.out.display_name().to_owned(),
                message: format!("{} values missing", self.remaining),
            });
        }
        self.out.commit()
    }
}

/// Magic, version 1.0, header length and the padded header dict.
fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    // A one-element tuple needs its trailing comma in Python syntax.
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // 6 magic + 2 version + 2 length bytes, then the dict ending in '\n'.
    let total = (10 + dict.len() + 1).next_multiple_of(64);
    dict.extend(std::iter::repeat_n(' ', total - 10 - dict.len() - 1));
    dict.push('\n');
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::names_in;

    #[test]
    fn header_is_aligned_and_well_formed() {
        let h = header("<f4", &[3, 5]);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
        let text = std::str::from_utf8(&h[10..]).expect("ascii");
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }"));
        assert!(text.ends_with('\n'));
        let one = header("<f2", &[7]);
        assert!(std::str::from_utf8(&one[10..])
            .expect("ascii")
            .contains("'shape': (7,)"));
    }

    #[test]
    fn streams_values_and_commits_only_when_complete() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.npy");
        let mut w = Writer::create(&path, Dtype::F16, &[2, 3]).expect("create");
        w.write(&[1.0, 2.0]).expect("write");
        w.write(&[3.0, 4.0, 5.0, -1.0]).expect("write");
        w.finish().expect("finish");
        let bytes = std::fs::read(&path).expect("read");
        let data = &bytes[bytes.len() - 12..];
        assert_eq!(&data[..2], half::f16::from_f32(1.0).to_le_bytes());
        assert_eq!(&data[10..], half::f16::from_f32(-1.0).to_le_bytes());
        assert_eq!(bytes.len(), 128 + 12);

        let short = dir.path().join("short.npy");
        let mut w = Writer::create(&short, Dtype::F32, &[4]).expect("create");
        w.write(&[1.0]).expect("write");
        let e = w.finish().expect_err("3 missing");
        assert!(e.to_string().contains("3 values missing"), "{e}");
        assert_eq!(names_in(dir.path()), vec!["a.npy"]);
    }

    #[test]
    fn bf16_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let e = Writer::create(&dir.path().join("b.npy"), Dtype::Bf16, &[1]).expect_err("bf16");
        assert!(e.to_string().contains("no bfloat16"), "{e}");
    }
}
