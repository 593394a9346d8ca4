//! A peer that does not speak ping but pings us (what a js-libp2p client without the ping
//! service does: its connection monitor pings every connection and closes the ones whose
//! pings go unanswered) keeps its pings answered and its connection, however often we
//! tried to ping it.

use std::{future::Future, time::Duration};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, noise,
    swarm::{NetworkBehaviour, dial_opts::DialOpts},
    tcp, yamux,
};
use rm_network::{Config, Network, keys, libp2p};

const PING: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");

/// How often the host under test pings.
const INTERVAL: Duration = Duration::from_millis(200);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("step timed out")
}

/// A swarm of `behaviour` over TCP + noise + yamux.
fn swarm<B: NetworkBehaviour>(behaviour: impl FnOnce() -> B) -> Swarm<B> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| behaviour())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// The peer: raw streams only, so it refuses inbound pings; it pings through `control`.
/// Returns its peer id, the control, and the task driving its swarm.
fn peer_without_ping(target: PeerId, addr: Multiaddr) -> (PeerId, libp2p_stream::Control) {
    let mut swarm = swarm(libp2p_stream::Behaviour::new);
    let control = swarm.behaviour().new_control();
    let id = *swarm.local_peer_id();
    swarm
        .dial(DialOpts::peer_id(target).addresses(vec![addr]).build())
        .unwrap();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    (id, control)
}

/// One ping on a fresh stream, as js-libp2p's connection monitor sends it.
async fn ping(control: &mut libp2p_stream::Control, peer: PeerId) -> std::io::Result<()> {
    let mut stream = control
        .open_stream(peer, PING)
        .await
        .map_err(std::io::Error::other)?;
    let payload: [u8; 32] = rand::random();
    stream.write_all(&payload).await?;
    let mut echo = [0u8; 32];
    stream.read_exact(&mut echo).await?;
    assert_eq!(echo, payload);
    stream.close().await
}

/// Pings `peer` `times` times, `INTERVAL` apart; how many were answered within 1 s.
async fn answered(control: &mut libp2p_stream::Control, peer: PeerId, times: usize) -> usize {
    let mut answered = 0;
    for _ in 0..times {
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), ping(control, peer)).await
        {
            answered += 1;
        }
        tokio::time::sleep(INTERVAL).await;
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_of_a_peer_that_refuses_ours_are_answered_and_its_connection_stays() {
    let mut config = Config::default().with_listen_addrs(["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    config.ping_interval = Some(INTERVAL);
    config.ping_timeout = Duration::from_secs(1);
    let host = within(Network::new(keys::generate(), config))
        .await
        .unwrap();
    let addr = within(host.listen_addrs()).await.unwrap().remove(0);
    let (peer, mut control) = peer_without_ping(host.local_peer_id(), addr);

    // The host pings the peer every 200 ms and is refused each time; meanwhile, and well
    // after, every ping of the peer is answered (fifteen over ~4 s).
    let answered = within(answered(&mut control, host.local_peer_id(), 15)).await;
    assert_eq!(answered, 15, "pings answered");
    assert!(within(host.is_connected(peer)).await.unwrap());
    host.shutdown().await;
}

/// The same peer against `libp2p::ping` alone: once the peer has refused one ping,
/// libp2p-ping 0.48 no longer answers the peer's pings on that connection. This is why
/// the host runs its own ping (`src/ping.rs`); if this starts failing, libp2p fixed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_ping_alone_stops_answering_a_peer_that_refused_its_ping() {
    let mut host =
        swarm(|| libp2p::ping::Behaviour::new(libp2p::ping::Config::new().with_interval(INTERVAL)));
    host.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
            within(host.select_next_some()).await
        {
            break address;
        }
    };
    let host_id = *host.local_peer_id();
    tokio::spawn(async move {
        loop {
            host.select_next_some().await;
        }
    });
    let (_, mut control) = peer_without_ping(host_id, addr);
    // Let the host's first ping be refused, then ping it.
    tokio::time::sleep(INTERVAL * 3).await;
    let answered = within(answered(&mut control, host_id, 5)).await;
    assert_eq!(
        answered, 0,
        "libp2p-ping answered pings after its own was refused"
    );
}
