//! Input and output for strand.
//!
//! - [`seq`]: streaming FASTA/FASTQ reader (plain, gzip, BGZF), with
//!   errors that name the file, record and line.
//! - [`atomic`]: output files that appear under their final name only once
//!   complete, so a killed or failed job never leaves a file that looks
//!   finished.
//! - [`safetensors`]: streaming safetensors writer with bounded memory.
//!
//! All fallible functions return [`Error`], whose messages are complete
//! (lower case, naming the file) and can be shown to the user as they are.

pub mod atomic;
pub mod bam;
pub mod bed;
pub mod dtype;
pub mod error;
pub mod faidx;
pub mod npy;
pub mod region;
pub mod safetensors;
pub mod same_file;
pub mod seq;
pub mod vcf;
pub mod windows;

pub use atomic::{commit_all, AtomicFile, Dest};
pub use dtype::Dtype;
pub use error::{Error, Position};
pub use same_file::check_outputs;
pub use seq::{check_unique_ids, Format, IdSet, Reader, Record};

/// Helpers shared by the unit tests of several modules.
#[cfg(test)]
pub(crate) mod test_util {
    use std::path::Path;

    /// Sorted file names in `dir` (to check that nothing was left behind).
    pub fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    /// The CLI moves readers and writers between threads (e.g. a reader
    /// thread feeding workers), so they must stay `Send`.
    #[test]
    fn public_types_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<crate::Reader>();
        assert_send::<crate::AtomicFile>();
        assert_send::<crate::safetensors::Writer>();
        assert_send::<crate::Error>();
    }
}
