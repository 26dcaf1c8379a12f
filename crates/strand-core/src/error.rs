//! The one error type of `strand-core`.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
///
/// Messages are lower case without a trailing period and name the file or
/// tensor involved, so the command line can print them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Config { path: PathBuf, msg: String },
    #[error("{}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    #[error("{}: tensor {name}: {msg}", path.display())]
    Tensor {
        path: PathBuf,
        name: String,
        msg: String,
    },
    #[error("{0}")]
    ModelNotFound(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Input(String),
    #[error(
        "strand was built without CUDA support; rebuild with `--features cuda` or use --device cpu"
    )]
    CudaNotCompiled,
    /// A GPU that cannot be used or a CUDA call that failed; the message
    /// says which and, where it can, what to do.
    #[error("cuda: {0}")]
    Cuda(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
