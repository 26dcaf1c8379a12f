//! BCF in and out, through noodles, behind the text interface of
//! [`Reader`](super::Reader) and [`Writer`](super::Writer): a BCF input is
//! decoded to VCF text (so every check and message of the text reader
//! applies), and a BCF output encodes the text the writer is given.
//! Line numbers in messages about a BCF count its header lines and
//! records as the equivalent VCF's would.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

use noodles::bcf;
use noodles::bgzf;
use noodles::csi::binning_index::index::reference_sequence::bin::Chunk;
use noodles::vcf;
use noodles::vcf::variant::io::Write as _;

use super::index::Indexer;
use crate::atomic::AtomicFile;
use crate::error::Error;

/// The first bytes of a (decompressed) BCF file.
pub const MAGIC: &[u8] = b"BCF\x02";

/// Reads decompressed BCF and hands out VCF text: the header, then one
/// line per record.
pub struct TextReader<R> {
    bcf: bcf::io::Reader<R>,
    header: vcf::Header,
    record: bcf::Record,
    text: VecDeque<u8>,
    done: bool,
}

impl<R: Read> TextReader<R> {
    /// Reads the BCF header; `input` starts at the magic number.
    pub fn new(input: R) -> io::Result<TextReader<R>> {
        let mut bcf = bcf::io::Reader::from(input);
        let header = bcf.read_header()?;
        let mut w = vcf::io::Writer::new(Vec::new());
        w.write_header(&header)?;
        Ok(TextReader {
            bcf,
            header,
            record: bcf::Record::default(),
            text: w.into_inner().into(),
            done: false,
        })
    }

    /// Decodes the next record into `text`; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        if self.bcf.read_record(&mut self.record)? == 0 {
            self.done = true;
            return Ok(false);
        }
        let mut w = vcf::io::Writer::new(Vec::new());
        w.write_variant_record(&self.header, &self.record)?;
        self.text.extend(w.into_inner());
        Ok(true)
    }
}

impl<R: Read> Read for TextReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for TextReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.text.is_empty() && self.refill()? {}
        self.text.make_contiguous();
        Ok(self.text.as_slices().0)
    }

    fn consume(&mut self, n: usize) {
        self.text.drain(..n);
    }
}

/// A BCF output: header lines are collected until the first record (or
/// the end), then the header is encoded, then each record; a `.csi` index
/// is built on the way.
pub struct Out {
    name: String,
    path: PathBuf,
    header_text: String,
    /// The parsed header, once the first record (or the end) came.
    header: Option<vcf::Header>,
    writer: Option<bcf::io::Writer<bgzf::io::Writer<AtomicFile>>>,
    pub(super) indexer: Option<Indexer>,
}

impl Out {
    /// `indexer`: None when writing to stdout.
    pub fn new(file: AtomicFile, path: &Path, indexer: Option<Indexer>) -> Out {
        Out {
            name: file.display_name().to_owned(),
            path: path.to_owned(),
            header_text: String::new(),
            header: None,
            writer: Some(bcf::io::Writer::new(file)),
            indexer,
        }
    }

    fn invalid(&self, at: String, message: String) -> Error {
        Error::InvalidAt {
            file: self.name.clone(),
            at,
            message,
        }
    }

    fn write_error(&self, source: io::Error) -> Error {
        Error::Write {
            file: self.name.clone(),
            source,
        }
    }

    pub fn header_line(&mut self, line: &str) {
        self.header_text.push_str(line);
        self.header_text.push('\n');
    }

    /// Parses and writes the header once all its lines are in.
    fn start(&mut self) -> Result<(), Error> {
        if self.header.is_some() {
            return Ok(());
        }
        let mut header: vcf::Header = self.header_text.parse().map_err(|e| {
            self.invalid(
                "header".into(),
                format!("cannot encode the header as BCF: {e}"),
            )
        })?;
        *header.string_maps_mut() = vcf::header::StringMaps::try_from(&header).map_err(|e| {
            self.invalid(
                "header".into(),
                format!("cannot encode the header as BCF: {e}"),
            )
        })?;
        let w = self.writer.as_mut().expect("open until finish");
        if let Err(e) = w.write_header(&header) {
            return Err(self.write_error(e));
        }
        self.header = Some(header);
        Ok(())
    }

    /// Encodes one record given as VCF text fields.
    pub fn record(&mut self, fields: &[String], line: u64) -> Result<(), Error> {
        self.start()?;
        let at = || format!("input line {line} ({}:{})", fields[0], fields[1]);
        let header = self.header.as_ref().expect("started");
        let Some(rid) = header.string_maps().contigs().get_index_of(&fields[0]) else {
            return Err(self.invalid(
                at(),
                format!(
                    "contig {:?} is not declared in the header (##contig), which BCF needs; \
                     write VCF (-O z) or add the contig lines (bcftools reheader)",
                    fields[0]
                ),
            ));
        };
        let mut text = fields.join("\t");
        text.push('\n');
        let mut rec = vcf::Record::default();
        vcf::io::Reader::new(text.as_bytes())
            .read_record(&mut rec)
            .map_err(|e| self.invalid(at(), format!("cannot parse the record: {e}")))?;
        let w = self.writer.as_mut().expect("open until finish");
        let start_vp = w.get_ref().virtual_position();
        if let Err(e) = w.write_variant_record(header, &rec) {
            return Err(self.invalid(at(), format!("cannot encode the record as BCF: {e}")));
        }
        let end_vp = w.get_ref().virtual_position();
        if let Some(ix) = &mut self.indexer {
            let pos: u64 = fields[1].parse().expect("checked when read");
            let end = pos + fields[3].len() as u64 - 1;
            ix.add(
                &fields[0],
                Some(rid),
                pos,
                end,
                Chunk::new(start_vp, end_vp),
            )
            .map_err(|m| Error::InvalidAt {
                file: self.name.clone(),
                at: at(),
                message: m,
            })?;
        }
        Ok(())
    }

    /// Completes the BCF and writes its index; returns the file, to
    /// commit after its index.
    pub fn finish(mut self) -> Result<(), Error> {
        self.start()?;
        let contigs = self.header.as_ref().expect("started").contigs().len();
        let w = self.writer.take().expect("open until finish");
        let file = w.into_inner().finish().map_err(|e| self.write_error(e))?;
        match self.indexer.take() {
            Some(ix) => ix.commit_with(file, &self.path, contigs).map(drop),
            None => file.commit(),
        }
    }
}
