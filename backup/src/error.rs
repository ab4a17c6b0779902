//! The backup library's one error enum. The CLI maps each to an exit code (README).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("wrong password for this repository")]
    WrongPassword,
    /// An exported key file that does not open this repository.
    #[error("wrong key file: {0}")]
    WrongKey(String),
    #[error("{0}")]
    Usage(String),
    #[error("no repository here: {0}")]
    NoRepository(String),
    #[error("data is corrupt: {0}")]
    Corrupt(String),
    #[error("only {present} of the {needed} shards needed could be read")]
    NotEnoughShards { present: usize, needed: usize },
    #[error("{0}")]
    Crypto(String),
    #[error("{0}")]
    Io(String),
    /// A file of the backup that could not be read (`path: reason`): `create` leaves it out.
    #[error("{0}")]
    Unreadable(String),
    /// `check` found problems (listed in its report).
    #[error("{0}")]
    CheckFailed(String),
    /// The snapshot was saved, but without paths that could not be read.
    #[error("{0}")]
    Incomplete(String),
    #[error("{context}: {source}")]
    Remote {
        context: String,
        source: lcp::client::ClientError,
    },
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl Error {
    /// The CLI's exit code: 2 bad usage (as clap's own errors), 3 wrong password or key file, 4 data missing or corrupt, 5 a service
    /// failed, 6 a snapshot saved without paths that could not be read, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::WrongPassword | Error::WrongKey(_) => 3,
            Error::Corrupt(_) | Error::NotEnoughShards { .. } | Error::CheckFailed(_) => 4,
            Error::Remote { .. } => 5,
            Error::Incomplete(_) => 6,
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Context for a failed call to a service.
pub fn remote(context: impl Into<String>) -> impl FnOnce(lcp::client::ClientError) -> Error {
    let context = context.into();
    move |source| Error::Remote { context, source }
}
