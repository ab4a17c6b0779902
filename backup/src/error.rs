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
    /// `object` (`p-...`, `i-...`, `s-...`; empty when not known yet) cannot be read.
    #[error("{}only {present} of the {needed} shards needed could be read", prefix(.object))]
    NotEnoughShards {
        object: String,
        present: usize,
        needed: usize,
    },
    /// A slot's contract has no room for a write.
    #[error("{0}")]
    Full(String),
    /// A slot's contract has ended: writes are refused until `repair` renews it.
    #[error("{0}")]
    Ended(String),
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
    /// The command was stopped by a signal (SIGINT, SIGTERM) after removing its lock; the CLI
    /// exits 128 + the signal's number, as a shell reports a process killed by it.
    #[error("interrupted by {signal}: the lock is removed; run the command again to resume")]
    Interrupted {
        signal: &'static str,
        exit_code: i32,
    },
    #[error("{context}: {source}")]
    Remote {
        context: String,
        source: node::client::ClientError,
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
            Error::Interrupted { exit_code, .. } => *exit_code,
            _ => 1,
        }
    }
}

fn prefix(object: &str) -> String {
    if object.is_empty() {
        String::new()
    } else {
        format!("{object}: ")
    }
}

impl Error {
    /// This error, naming `object` when it is one that could not be read.
    pub fn naming(self, object: &str) -> Error {
        match self {
            Error::NotEnoughShards {
                present, needed, ..
            } => Error::NotEnoughShards {
                object: object.to_owned(),
                present,
                needed,
            },
            Error::Corrupt(what) if !what.contains(object) => {
                Error::Corrupt(format!("{object}: {what}"))
            }
            other => other,
        }
    }
}

/// Context for a failed call to a service.
pub fn remote(context: impl Into<String>) -> impl FnOnce(node::client::ClientError) -> Error {
    let context = context.into();
    move |source| Error::Remote { context, source }
}
