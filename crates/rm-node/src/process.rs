//! What a long-running node process sets for itself before it starts, and what the
//! kernel says of a process's memory.
//!
//! glibc's allocator gives each thread that allocates under contention an arena of its
//! own, up to eight per core, and keeps what each arena once held. A provider serving
//! many deals at once touches all of them: 1,000 concurrent 1 MiB deals peaked at 132 MiB
//! with glibc's default and at 98 MiB with one arena per core on this project's 2-core
//! machine (docs/performance.md). [`one_malloc_arena_per_core`] sets that for the process.
//!
//! ```no_run
//! // First thing in `main`: it may start the program again, in place.
//! if let Some(e) = rm_node::process::one_malloc_arena_per_core() {
//!     eprintln!("going on with glibc's default arenas: {e}");
//! }
//! // ... then build the async runtime and serve.
//! ```

/// The environment variable glibc reads for the most arenas its allocator makes.
pub const MALLOC_ARENA_MAX: &str = "MALLOC_ARENA_MAX";

/// Makes glibc's allocator keep one arena per core for this process: unless
/// `MALLOC_ARENA_MAX` is set already (an operator's value wins, and the program's second
/// start sees it set), runs this program again in place (`exec`: same process id, same
/// arguments and open files) with `MALLOC_ARENA_MAX` set to the number of cores. glibc
/// reads it only when a process starts, hence the second start. Call it first in `main`,
/// before any thread starts.
///
/// Returns when nothing was done: the variable was set, the platform is not Linux with
/// glibc, or the program could not be started again (the error is returned then, and the
/// process goes on with glibc's default).
pub fn one_malloc_arena_per_core() -> Option<std::io::Error> {
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os(MALLOC_ARENA_MAX).is_some()
    {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return Some(e),
    };
    use std::os::unix::process::CommandExt;
    // Only returns on failure.
    Some(
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(MALLOC_ARENA_MAX, cores.to_string())
            .exec(),
    )
}

/// A figure in KiB from `/proc/<pid>/status` (`key` such as `"VmHWM:"`, the peak resident
/// set, or `"VmRSS:"`); `None` when the process is gone or the system has no `/proc`.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts this process's peak resident set (`VmHWM`) afresh, so that a later
/// [`status_kib`] counts from now (Linux: `5` written to `/proc/self/clear_refs`); false
/// where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
