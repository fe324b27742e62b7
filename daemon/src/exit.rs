//! Process exit codes, after BSD sysexits(3). Every way hearth can stop maps
//! to exactly one of these, so scripts and systemd can tell failures apart.

/// A sysexits code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Ok = 0,
    /// EX_USAGE: bad command line or configuration.
    Usage = 64,
    /// EX_DATAERR: the store or an input file is corrupt or not ours.
    DataErr = 65,
    /// EX_UNAVAILABLE: a listener could not be bound, or no daemon answers.
    Unavailable = 69,
    /// EX_SOFTWARE: an internal error.
    Software = 70,
    /// EX_IOERR: reading or writing a file failed.
    IoErr = 74,
    /// EX_TEMPFAIL: another hearth holds the data directory.
    TempFail = 75,
    /// EX_NOPERM: wrong or missing key, or unsafe permissions.
    NoPerm = 77,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
