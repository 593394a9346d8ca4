//! The `rm` binary: see the `rm_cli` crate docs, or `rm --help`.

fn main() -> std::process::ExitCode {
    rm_cli::main()
}
