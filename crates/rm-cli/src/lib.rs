//! # rm-cli: the `rm` command-line node
//!
//! Layer 5 of the workspace: argument parsing, output and one module per command around
//! `rm_node::Node`, the whole node in one home directory, which does the work.
//!
//! | command | what |
//! |---|---|
//! | `rm init` | create a node home: `config.toml`, libp2p key, wallet key, database |
//! | `rm import <file\|dir>` | store it as a piece in a sector; print payload and piece CIDs |
//! | `rm serve` | run the provider, the HTTP gateway and the DHT until Ctrl-C; print the addresses |
//! | `rm ask` | show or set the provider's prices and payment intervals (while `rm serve` runs, too) |
//! | `rm query <addr\|peer> <cid>` | ask a provider about a payload |
//! | `rm retrieve <addr\|peer> <cid> -o <path>` | a paid, verified retrieval with a progress bar; run again to resume |
//! | `rm deals` | client and provider deals with their status; `--follow` streams status changes from `rm serve` |
//! | `rm pieces [list\|show\|remove]` | the pieces held; remove one and free its disk space (while `rm serve` runs, too) |
//! | `rm fund` | payment channels in the local ledger; add funds |
//! | `rm demo` | a provider (`rm serve`, a child process) and a client on 127.0.0.1, with a summary |
//! | `rm fetch <provider> <cid>[/path] -o <path>` | an HTTP retrieval from trustless gateways, verified block by block; run again to resume |
//!
//! Every command takes `--json` (one JSON object per result, for scripts) and `--home`
//! (default `$RM_HOME`, else `~/.rm`). Errors print one sentence and the chain of causes
//! (with `--json`, usage errors too, as `{"error":…,"usage":…,"exit_code":2}`); [`exit`]
//! lists the exit codes. Long operations draw a progress bar on stderr when it is a
//! terminal and `--json` is not given.
//!
//! While `rm serve` runs, `rm import`, `rm ask`, `rm deals`, `rm fund` and `rm query` on
//! the same home go through its control socket (`rm_node::control`): an import is served
//! at once, a new ask applies to the next query and deal, nothing restarts. With no
//! server they open the home themselves.
//!
//! The binary is named `rm` as the design asks; do not put it in `PATH` ahead of coreutils'
//! `rm`. Run it by path (`./target/release/rm`) or through `cargo run --bin rm --`.
//!
//! ## Example
//!
//! The library is what the binary runs: [`Cli`] parses a command line, [`cmd::run`] runs it.
//! Programs that want a node rather than a command line use `rm-node` directly.
//!
//! ```
//! use clap::Parser;
//! let cli = rm_cli::Cli::try_parse_from(["rm", "--json", "deals", "--client"]).unwrap();
//! assert!(cli.global.json);
//! assert!(matches!(cli.command, rm_cli::Command::Deals(_)));
//! ```

pub mod cmd;
pub mod exit;
pub mod home;
pub mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use output::usage_error;

/// The `rm` command line.
#[derive(Debug, Parser)]
#[command(name = "rm", version, about = "A Filecoin retrieval market node", long_about = None)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The node home [default: $RM_HOME, else ~/.rm].
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Print results as JSON (one object per line) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node home: config.toml, libp2p key, wallet key, database.
    Init(cmd::init::InitArgs),
    /// Store a file or directory (or a CAR) as a piece in a sector.
    Import(cmd::import::ImportArgs),
    /// Run the provider (and the DHT) until Ctrl-C.
    Serve(cmd::serve::ServeArgs),
    /// Show or set the provider's ask (prices and payment intervals).
    Ask(cmd::ask::AskArgs),
    /// Ask a provider about a payload.
    Query(cmd::query::QueryArgs),
    /// Retrieve a payload, paying as it arrives; run again to resume.
    Retrieve(cmd::retrieve::RetrieveArgs),
    /// List client and provider deals.
    Deals(cmd::deals::DealsArgs),
    /// Payment channels in the local ledger: list them, add funds.
    Fund(cmd::fund::FundArgs),
    /// A provider (an `rm serve` child) and a client on 127.0.0.1: import, query, retrieve,
    /// check, and each side's peak memory.
    Demo(cmd::demo::DemoArgs),
    /// Fetch over HTTP from trustless gateways, verifying every block; run again to resume.
    Fetch(cmd::fetch::FetchArgs),
    /// The pieces this node holds: list, show one, remove one (freeing its disk space).
    Pieces(cmd::pieces::PiecesArgs),
}

/// Runs the command line of this process and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, wants_json(std::env::args_os())),
    };
    // A server keeps one malloc arena per core: it may start again here, in place
    // (`rm_node::process`).
    let restart = matches!(cli.command, Command::Serve(_))
        .then(rm_node::process::one_malloc_arena_per_core)
        .flatten();
    let out = output::Output::new(cli.global.json);
    init_logs();
    if let Some(e) = restart {
        tracing::warn!(error = %e, "could not start again with one malloc arena per core; going on with glibc's default");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return out.fail(&anyhow::Error::new(e).context("starting the async runtime")),
    };
    match runtime.block_on(cmd::run(cli, &out)) {
        Ok(code) => code,
        Err(e) => out.fail(&e),
    }
}

/// Whether a command line that did not parse asked for JSON: `--json` before any `--`.
pub fn wants_json(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Logs go to stderr, quiet unless `RUST_LOG` says otherwise.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libp2p_kad=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
