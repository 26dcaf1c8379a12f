//! The room before the data of a safetensors file written in place: it
//! grows by doubling, moving the data written so far up within the file.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
#[cfg(unix)]
use std::os::unix::fs::FileExt;

use super::{Body, MAX_HEADER_BYTES};
use crate::atomic::AtomicFile;
use crate::error::Error;

/// Makes the room before the data at least `header + 8` bytes: doubles it
/// (more if needed) and, for data written in place, moves the data up.
pub(super) fn reserve(out: &mut AtomicFile, body: &mut Body, header: usize) -> Result<(), Error> {
    let need = (header as u64 + 8).next_multiple_of(8);
    if need <= body.reserved {
        return Ok(());
    }
    let limit = (MAX_HEADER_BYTES as u64 + 8).next_multiple_of(8);
    let new = (body.reserved * 2).min(limit).max(need);
    if body.spool.is_none() {
        let (old, len) = (body.reserved, body.offset);
        let moved = out.temp_file().and_then(|file| {
            let file = file.ok_or_else(|| io::Error::other("not a file"))?;
            move_up(file, old, new, len)?;
            file.seek(SeekFrom::Start(new + len)).map(drop)
        });
        if let Err(source) = moved {
            body.broken = true;
            return Err(body.write_error(source));
        }
    }
    body.reserved = new;
    Ok(())
}

/// Moves `len` bytes at `from` up to `to` (> `from`) within `file`, last
/// block first so that nothing is overwritten before it is read.
#[cfg(unix)]
fn move_up(file: &File, from: u64, to: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; (1 << 20).min(len as usize)];
    let mut end = len;
    while end > 0 {
        let n = (buf.len() as u64).min(end);
        let start = end - n;
        file.read_exact_at(&mut buf[..n as usize], from + start)?;
        file.write_all_at(&buf[..n as usize], to + start)?;
        end = start;
    }
    // What is left below `to` is header room, overwritten at `finish`.
    Ok(())
}

impl Body {
    /// The 8-byte length and the header, padded with spaces to fill the
    /// reserved room (or longer, if it does not fit).
    pub(super) fn head(&self) -> Result<Vec<u8>, Error> {
        let mut header = self.header()?.into_bytes();
        let room = (self.reserved - 8) as usize;
        if header.len() < room {
            header.resize(room, b' ');
        }
        let mut head = (header.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(&header);
        Ok(head)
    }

    /// Writes length and header into the room reserved at the start of
    /// the destination's temporary file (the data is already behind it).
    pub(super) fn write_header_in_place(&mut self, out: &mut AtomicFile) -> Result<(), Error> {
        let head = self.head()?;
        debug_assert_eq!(head.len() as u64, self.reserved, "reserved before");
        out.temp_file()
            .and_then(|file| {
                let file = file.ok_or_else(|| io::Error::other("not a file"))?;
                file.write_all_at(&head, 0)
            })
            .map_err(|e| self.write_error(e))
    }
}
