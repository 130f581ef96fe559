//! The one error type of the library and its mapping to the exit codes of DESIGN.md.
//!
//! An error is a kind (which decides the exit code) plus a message that already carries its
//! context (`infra.toml:12:9: env.prod.vm.memory: expected a size like "48GiB"`). Context is
//! added outermost-first with [`Error::context`] / [`ResultExt::context`], so the message
//! printed once by the main wrapper reads from the general to the specific.

use std::fmt;

/// Exit codes shared by every tool except healthcheck (which follows Nagios).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitCode {
    /// Done.
    Ok = 0,
    /// The operation ran and failed or found a problem.
    Failed = 1,
    /// Bad command-line usage.
    Usage = 2,
    /// Malformed input data (a plan on stdin, a JSON line).
    DataErr = 65,
    /// A remote service stayed unavailable after retries.
    Unavailable = 69,
    /// Temporary: lock held, rate limited. Try again later.
    TempFail = 75,
    /// Refused: authentication, authorisation, SSH host key mismatch.
    NoPerm = 77,
    /// Invalid configuration.
    Config = 78,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c.code())
    }
}

/// What went wrong, coarsely: enough to choose an exit code and for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The operation ran and failed (exit 1).
    Failed,
    /// Bad usage: flags, arguments (exit 2).
    Usage,
    /// Malformed input data (exit 65).
    Data,
    /// A remote service stayed unavailable after retries (exit 69).
    Unavailable,
    /// Temporary condition: lock held, rate limited (exit 75).
    Temporary,
    /// Authentication, authorisation or host-key refusal (exit 77).
    Refused,
    /// Invalid configuration (exit 78).
    Config,
    /// stdout was closed by the reader: not an error for a Unix tool (exit 0).
    BrokenPipe,
}

impl ErrorKind {
    pub fn exit_code(self) -> ExitCode {
        match self {
            ErrorKind::Failed => ExitCode::Failed,
            ErrorKind::Usage => ExitCode::Usage,
            ErrorKind::Data => ExitCode::DataErr,
            ErrorKind::Unavailable => ExitCode::Unavailable,
            ErrorKind::Temporary => ExitCode::TempFail,
            ErrorKind::Refused => ExitCode::NoPerm,
            ErrorKind::Config => ExitCode::Config,
            ErrorKind::BrokenPipe => ExitCode::Ok,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn failed(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, m)
    }
    pub fn usage(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, m)
    }
    pub fn data(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, m)
    }
    pub fn temporary(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Temporary, m)
    }
    pub fn refused(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, m)
    }
    pub fn config(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, m)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn exit_code(&self) -> ExitCode {
        self.kind.exit_code()
    }

    /// Prefix the message with what was being done: `reading plan: line 3: …`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// An I/O error, keeping broken pipes distinguishable so the main wrapper exits 0.
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        let kind = if e.kind() == std::io::ErrorKind::BrokenPipe {
            ErrorKind::BrokenPipe
        } else {
            ErrorKind::Failed
        };
        Error::new(kind, format!("{what}: {e}"))
    }
}

/// The OS's words for an I/O error, without Rust's ` (os error 2)` suffix, for messages
/// like `infra.toml: cannot read: No such file or directory`.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::io("I/O error", e)
    }
}

/// Attach context to any result whose error can be displayed.
pub trait ResultExt<T> {
    /// Wrap as an error of `kind`, prefixed with `what`.
    fn or_kind(self, kind: ErrorKind, what: impl fmt::Display) -> Result<T>;
    /// Prefix with `what`, keeping the kind when it is already an [`Error`].
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn or_kind(self, kind: ErrorKind, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| {
            let e: Error = e.into();
            Error::new(kind, format!("{what}: {}", e.message))
        })
    }
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_documented_exit_codes() {
        let table = [
            (ErrorKind::Failed, 1),
            (ErrorKind::Usage, 2),
            (ErrorKind::Data, 65),
            (ErrorKind::Unavailable, 69),
            (ErrorKind::Temporary, 75),
            (ErrorKind::Refused, 77),
            (ErrorKind::Config, 78),
            (ErrorKind::BrokenPipe, 0),
        ];
        for (kind, code) in table {
            assert_eq!(kind.exit_code().code(), code, "{kind:?}");
        }
    }

    #[test]
    fn context_reads_general_to_specific_and_keeps_kind() {
        let r: Result<()> = Err(Error::refused("host key mismatch"));
        let e = r.context("ssh deploy@10.0.0.1").unwrap_err();
        assert_eq!(e.to_string(), "ssh deploy@10.0.0.1: host key mismatch");
        assert_eq!(e.exit_code(), ExitCode::NoPerm);
    }

    #[test]
    fn broken_pipe_is_not_a_failure() {
        let e = Error::io(
            "writing stdout",
            std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        );
        assert_eq!(e.exit_code(), ExitCode::Ok);
    }
}
