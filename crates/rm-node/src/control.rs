//! The control interface: how commands talk to a running node.
//!
//! While `rm serve` runs, it owns the home (RocksDB's lock), so `rm import`, `rm ask`,
//! `rm deals`, `rm pieces`, `rm fund` and `rm query` send their work to it over a Unix
//! socket in the home, `<home>/control.sock`; when no server runs they open the home themselves. Either
//! way they get the same results ([`Session`]).
//!
//! **Why a Unix socket.** Access is the file system's: the socket is made mode 0600 in
//! the home, next to the wallet keys, and the server also checks that the peer process
//! runs as the socket's owner (`SO_PEERCRED`), so the moment between `bind` and `chmod`
//! gives nobody else a way in. There is no port to pick or collide with, nothing
//! reachable from the network even by a wrong setting, and no token file to leak or
//! rotate. Finding the server is finding the socket: a command that cannot connect (no
//! file, or a file left by a server that died) opens the home directly. The cost: the
//! socket's path must fit in 107 bytes (`sun_path`), so a very deep home is refused with
//! a clear error, and it is Unix-only, as `rm` is. Prometheus needs HTTP, so `/metrics`
//! is served separately, on loopback ([`crate::metrics`]).
//!
//! **The protocol.** One request per connection: the client writes one JSON object on one
//! line ([`Request`], tagged by `op`), the server answers with JSON lines ([`Reply`]) and
//! closes after [`Reply::Done`] or [`Reply::Error`]. Import sends [`Reply::Progress`]
//! lines; a deal listing sends one [`Reply::Deal`] per deal and [`Reply::Listed`], and with
//! `follow` then one [`Reply::Deal`] per status change until the client closes. For
//! example, with socat:
//!
//! ```text
//! $ echo '{"op":"ask","price_per_byte":"3"}' | socat - UNIX-CONNECT:$RM_HOME/control.sock
//! {"done":{"price_per_byte":"3","unseal_price":"0","payment_interval":1048576,"payment_interval_increase":1048576,"changed":true}}
//! ```
//!
//! **Limits.** A request is at most [`MAX_REQUEST_BYTES`] and must arrive within
//! [`REQUEST_TIMEOUT`]; at most [`MAX_CONNECTIONS`] connections are served at once (more
//! are told `busy`); every reply line must be written within [`WRITE_TIMEOUT`] or the
//! connection is dropped. An oversized, late or malformed request gets one
//! [`Reply::Error`] (`too_large`, `timeout`, `bad_request`) and the connection is closed;
//! the server goes on.
//!
//! **Adding an operation** (`rm pieces` was added this way): a [`Request`] variant with its
//! request and result types in `api.rs`; a method of [`Operations`] in `ops.rs` that does
//! it on a [`Node`](crate::Node); one arm in `run` in `server.rs`; a method of [`Session`]
//! in `client.rs` (served: `Session::call`; local: the [`Operations`] method); and the
//! command in `rm-cli` calling it. The result type is what `--json` prints.

pub mod api;
mod client;
mod ops;
mod server;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use api::{Reply, Request};
pub use client::{Connection, Session};
pub use ops::{Change, DealChanges, Operations, ProgressSink, client_view, provider_view};
pub use server::ControlServer;

/// The largest request line, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 << 10;
/// Time for a whole request line to arrive after the connection.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once (followed deal listings included).
pub const MAX_CONNECTIONS: usize = 32;
/// Time to write one reply line (the client must read).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an import's progress is sent.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// The largest reply line a client accepts, in bytes.
pub const MAX_REPLY_BYTES: usize = 16 << 20;
/// How long a client waits for the next reply line (a query may dial and search the
/// DHT; an import sends progress every [`PROGRESS_INTERVAL`]).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a client waits to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest socket path (`sun_path` holds 108 bytes with the final NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// What went wrong on the control socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The socket's path does not fit in a Unix socket address.
    #[error(
        "the control socket path {} is longer than {MAX_SOCKET_PATH} bytes: use a home with a shorter path",
        .0.display()
    )]
    PathTooLong(PathBuf),
    /// Socket I/O.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// A step took too long.
    #[error("control socket: timed out {0}")]
    Timeout(&'static str),
    /// A line over its cap.
    #[error("control socket: a line longer than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// A request or reply could not be encoded.
    #[error("control socket: encoding: {0}")]
    Encode(String),
    /// The server's reply is not what the protocol says.
    #[error("control socket: unexpected reply: {0}")]
    BadReply(String),
    /// The server refused or failed the request.
    #[error("{}", .0.message)]
    Server(Box<api::ErrorReply>),
    /// The server closed the connection before its result.
    #[error("the server closed the control connection before answering")]
    Closed,
    /// The server stopped between two requests.
    #[error("the server stopped")]
    Gone,
    /// Following deals needs a running server.
    #[error("no `rm serve` runs on this home: there are no changes to follow")]
    NotServing,
}

impl From<ControlError> for crate::Error {
    fn from(e: ControlError) -> Self {
        crate::Error::Control(Box::new(e))
    }
}

/// Refuses a socket path that does not fit in `sun_path`.
fn check_path(path: &Path) -> Result<(), ControlError> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(ControlError::PathTooLong(path.to_path_buf()));
    }
    Ok(())
}
