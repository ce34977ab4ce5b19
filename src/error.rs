//! The errors fuseval tells apart, and the process's exit codes: [`Error`] and [`ExitCode`]. Every exit
//! code comes from [`ExitCode`]: a command returns one, and a failed command's code is
//! [`ExitCode::of`] its error.

/// An error that decides the exit code (see [`ExitCode::of`]); any other error exits with
/// [`ExitCode::Failure`]. Build one with [`user`], or `Error::Locked(..).into()`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Caused by the user's input (a bad model, a bad flag), not by fuseval: reported as one paragraph.
    #[error("{0}")]
    User(String),
    /// `--lock fail`, and another bench run holds the lock.
    #[error("{0}")]
    Locked(String),
    /// Ctrl-C or SIGTERM while waiting for the lock, before anything was measured.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::User(_) => ExitCode::BadInput,
            Error::Locked(_) => ExitCode::Locked,
            Error::Interrupted => ExitCode::Interrupted,
        }
    }
}

/// Build an `anyhow::Error` that is the user's to fix ([`Error::User`], exit code 2).
pub fn user(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Error::User(msg.into()))
}

/// Whether an error is the user's to fix (exit code 2).
pub fn is_user_error(e: &anyhow::Error) -> bool {
    ExitCode::of(e) == ExitCode::BadInput
}

/// The exit codes of the command line (`fuseval --help` and the README list them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ExitCode {
    /// Everything asked for was done (measured, validated, printed).
    Ok = 0,
    /// Any other failure.
    Failure = 1,
    /// Bad input the user must fix ([`Error::User`]).
    BadInput = 2,
    /// `bench` finished, but some instances were skipped (see `skip_reason`).
    Skipped = 3,
    /// `--lock fail`, and another bench run holds the lock ([`Error::Locked`]).
    Locked = 4,
    /// `validate --strict`: a group of the plan is harmful.
    Harmful = 5,
    /// Interrupted by Ctrl-C or SIGTERM ([`Error::Interrupted`]); what finished is on disk.
    Interrupted = 130,
}

impl ExitCode {
    /// Every exit code, in order.
    pub const ALL: [ExitCode; 7] = [
        ExitCode::Ok,
        ExitCode::Failure,
        ExitCode::BadInput,
        ExitCode::Skipped,
        ExitCode::Locked,
        ExitCode::Harmful,
        ExitCode::Interrupted,
    ];

    /// The process exit status.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The exit code a failed command ends with: that of the first [`Error`] in the chain, else
    /// [`ExitCode::Failure`].
    pub fn of(e: &anyhow::Error) -> ExitCode {
        e.chain().find_map(|c| c.downcast_ref::<Error>()).map_or(ExitCode::Failure, Error::exit_code)
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn the_codes() {
        let codes: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 130]);
    }

    #[test]
    fn of_finds_the_error_under_context() {
        let ctx = |e: anyhow::Error| Err::<(), _>(e).context("outer").context("outermost").unwrap_err();
        assert_eq!(ExitCode::of(&ctx(user("bad flag"))), ExitCode::BadInput);
        assert_eq!(ExitCode::of(&ctx(Error::Locked("held".into()).into())), ExitCode::Locked);
        assert_eq!(ExitCode::of(&ctx(Error::Interrupted.into())), ExitCode::Interrupted);
        assert_eq!(ExitCode::of(&ctx(anyhow::anyhow!("ORT failed"))), ExitCode::Failure);
        assert!(is_user_error(&ctx(user("bad model"))));
        assert!(!is_user_error(&ctx(Error::Locked("held".into()).into())));
        // the message is the user's text, unchanged
        assert_eq!(format!("{:#}", ctx(user("bad flag"))), "outermost: outer: bad flag");
    }
}
