//! A TCP proxy on 127.0.0.1 that forwards to a local port from another loopback address,
//! and can cut a live connection: how the soak and the benchmark under attack make
//! honest clients come from their own address (a provider limits and remembers peers
//! by IP address) and break connections mid-deal.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpSocket};

/// A running proxy (its accept loop lives as long as the runtime).
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    live: Mutex<Vec<tokio::task::AbortHandle>>,
    accepted: AtomicU64,
    cuts: AtomicU64,
}

impl Proxy {
    /// Listens on 127.0.0.1 and forwards each connection to `127.0.0.1:upstream`,
    /// connecting from `source` (e.g. 127.0.0.2).
    pub async fn start(upstream: u16, source: IpAddr) -> std::io::Result<Arc<Proxy>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = Arc::new(Proxy {
            port: listener.local_addr()?.port(),
            live: Mutex::default(),
            accepted: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
        });
        let p = Arc::clone(&proxy);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                p.accepted.fetch_add(1, Ordering::Relaxed);
                let task = tokio::spawn(async move {
                    let Ok(socket) = TcpSocket::new_v4() else {
                        return;
                    };
                    if socket.bind(SocketAddr::new(source, 0)).is_err() {
                        return;
                    }
                    let to = SocketAddr::from(([127, 0, 0, 1], upstream));
                    let Ok(mut outbound) = socket.connect(to).await else {
                        return;
                    };
                    let _ = outbound.set_nodelay(true);
                    let _ = inbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                p.lock().push(task.abort_handle());
            }
        });
        Ok(proxy)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::AbortHandle>> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|h| !h.is_finished());
        live
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts live connection number `pick` modulo their count (both ends see it close);
    /// false if there is none.
    pub fn cut(&self, pick: u64) -> bool {
        let mut live = self.lock();
        if live.is_empty() {
            return false;
        }
        let i = (pick % live.len() as u64) as usize;
        live.swap_remove(i).abort();
        self.cuts.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }
}
