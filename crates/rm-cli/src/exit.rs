//! Exit codes of `rm`.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | an error (the message says what and why) |
//! | 2 | the command line is wrong (usage) |
//! | 3 | the deal or query ended without the data: rejected, not found, failed, cancelled; or the demo's output differs from its input |
//! | 130 | interrupted (Ctrl-C); a retrieval's deal is kept and resumes on the next run |

use std::process::ExitCode;

/// Done.
pub const OK: u8 = 0;
/// An error.
pub const ERROR: u8 = 1;
/// Usage (clap's own code).
pub const USAGE: u8 = 2;
/// The deal or query ended without the data.
pub const NOT_DONE: u8 = 3;
/// Interrupted.
pub const INTERRUPTED: u8 = 130;

/// The code as an [`ExitCode`].
pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
