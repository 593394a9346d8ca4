//! rm's retrieval protocols in a swarm of your own, next to another libp2p behaviour.
//!
//! Two swarms on 127.0.0.1, each running `rm_network::Behaviour` and `libp2p::ping`. The
//! provider answers queries from its own event loop; the client asks one through the
//! behaviour's `Control` and prints the answer.
//!
//! ```text
//! cargo run -p rm-network --example compose
//! ```

use std::{error::Error, time::Duration};

use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm, SwarmBuilder, noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use rm_network::{Behaviour, BehaviourConfig, Event};
use rm_types::{Query, QueryItemStatus, QueryResponse, QueryResponseStatus, TokenAmount};

/// The program's own behaviour: the retrieval protocols and ping, side by side.
#[derive(NetworkBehaviour)]
struct Node {
    retrieval: Behaviour,
    ping: ping::Behaviour,
}

/// A swarm with both behaviours (TCP + noise + yamux, as go-fil-markets peers use).
fn swarm() -> Result<Swarm<Node>, Box<dyn Error>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| Node {
            retrieval: Behaviour::new(BehaviourConfig::default()),
            ping: ping::Behaviour::default(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build())
}

/// What the provider answers: 19,000 bytes at 1,000 attoFIL a byte.
fn answer() -> QueryResponse {
    QueryResponse {
        status: QueryResponseStatus::Available,
        piece_cid_found: QueryItemStatus::Available,
        size: 19_000,
        payment_address: "f01000".parse().expect("an ID address"),
        min_price_per_byte: TokenAmount::from_atto(1000u64),
        max_payment_interval: 1 << 20,
        max_payment_interval_increase: 1 << 20,
        message: String::new(),
        unseal_price: TokenAmount::zero(),
    }
}

/// Runs a provider swarm and a client swarm, asks one query, and returns the answer and
/// the pings the provider saw.
pub(crate) async fn run() -> Result<(QueryResponse, usize), Box<dyn Error>> {
    // The provider: its event loop answers queries and counts pings.
    let mut provider = swarm()?;
    provider.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let addr: Multiaddr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = provider.select_next_some().await {
            break address;
        }
    };
    let provider_id = *provider.local_peer_id();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let provider_loop = tokio::spawn(async move {
        let mut pings = 0;
        loop {
            tokio::select! {
                _ = &mut stopped => return pings,
                event = provider.select_next_some() => match event {
                    SwarmEvent::Behaviour(NodeEvent::Retrieval(Event::Query(request))) => {
                        println!("provider: {} asks for {}", request.peer, request.query.payload_cid);
                        let _ = request.respond(answer());
                    }
                    // A deal stream: a provider would serve it (`read_proposal`, ...).
                    SwarmEvent::Behaviour(NodeEvent::Retrieval(Event::Deal(stream))) => drop(stream),
                    SwarmEvent::Behaviour(NodeEvent::Ping(ping::Event { result: Ok(rtt), .. })) => {
                        pings += 1;
                        println!("provider: ping {rtt:?}");
                    }
                    _ => {}
                },
            }
        }
    });

    // The client: its swarm runs in a task; the query goes through the Control, which
    // dials the provider at the address the swarm was given.
    let mut client = swarm()?;
    let control = client.behaviour().retrieval.control();
    client.add_peer_address(provider_id, addr.clone());
    let client_loop = tokio::spawn(async move {
        loop {
            client.select_next_some().await;
        }
    });
    let payload = "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb".parse()?;
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        control.query(provider_id, &Query::new(payload)),
    )
    .await??;
    println!(
        "client: {} bytes at {}/byte from {provider_id} at {addr}",
        response.size,
        response.min_price_per_byte.display_atto()
    );
    // libp2p::ping pings at once on a new connection; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    client_loop.abort();
    let _ = stop.send(());
    let pings = provider_loop.await?;
    Ok((response, pings))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (response, _) = run().await?;
    assert_eq!(response, answer());
    Ok(())
}
