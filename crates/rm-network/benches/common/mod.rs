//! What the deal-stream benches share: a provider that answers deal streams with
//! `DealResponse`s of four 1 MiB blocks and serves a bare protocol, a client, and the two
//! transfers.

#![allow(dead_code)]

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use rm_network::{
    Config, Event, Network, keys,
    libp2p::{Multiaddr, PeerId, StreamProtocol},
};
use rm_types::{Block, DealId, DealProposal, DealResponse, DealStatus, Params, TokenAmount};

pub(crate) const BLOCK: usize = 1 << 20;
pub(crate) const BLOCKS_PER_RESPONSE: usize = 4;
pub(crate) const BARE: StreamProtocol = StreamProtocol::new("/rm-bench/bare/1.0.0");

pub(crate) fn response() -> DealResponse {
    let blocks = (0..BLOCKS_PER_RESPONSE)
        .map(|i| Block {
            prefix: vec![0x01, 0x55, 0x12, 0x20],
            data: (0..BLOCK)
                .map(|j| (i * 31 + j * 7) as u8)
                .collect::<Vec<u8>>()
                .into(),
        })
        .collect();
    DealResponse {
        status: DealStatus::Ongoing,
        id: DealId(1),
        payment_owed: TokenAmount::zero(),
        message: String::new(),
        blocks,
    }
}

/// A network listening on 127.0.0.1 whose queries and deal streams come out of the
/// returned channel (of `capacity`).
pub(crate) async fn listening(capacity: usize) -> (Network, tokio::sync::mpsc::Receiver<Event>) {
    let loopback: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr");
    let net = Network::new(
        keys::generate(),
        Config::default().with_listen_addrs([loopback]),
    )
    .await
    .expect("provider starts");
    let (delegate, events) = tokio::sync::mpsc::channel(capacity);
    net.set_delegate(delegate);
    (net, events)
}

/// The provider: answers each deal stream with responses until `PaymentInterval` bytes
/// of block data are sent (the bench's way of saying how much), and serves the bare
/// protocol with 1 MiB writes.
pub(crate) async fn provider() -> Network {
    let (net, mut events) = listening(4).await;
    tokio::spawn(async move {
        let response = std::sync::Arc::new(response());
        while let Some(event) = events.recv().await {
            let Event::Deal(mut stream) = event else {
                continue;
            };
            let response = std::sync::Arc::clone(&response);
            tokio::spawn(async move {
                let Ok(proposal) = stream.read_proposal().await else {
                    return;
                };
                let mut sent = 0u64;
                while sent < proposal.params.payment_interval {
                    if stream.write_response(&response).await.is_err() {
                        return;
                    }
                    sent += (BLOCK * BLOCKS_PER_RESPONSE) as u64;
                }
                let _ = stream.close().await;
            });
        }
    });
    let mut incoming = net.accept(BARE).expect("bare protocol registers");
    tokio::spawn(async move {
        let block = vec![7u8; BLOCK];
        while let Some((_, mut stream)) = incoming.next().await {
            let block = block.clone();
            tokio::spawn(async move {
                let mut total = [0u8; 8];
                if stream.read_exact(&mut total).await.is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(total);
                while left > 0 {
                    if stream.write_all(&block).await.is_err() {
                        return;
                    }
                    left = left.saturating_sub(BLOCK as u64);
                }
                let _ = stream.close().await;
            });
        }
    });
    net
}

pub(crate) async fn deal_transfer(client: &Network, provider: PeerId, total: u64) {
    let mut stream = client
        .open_deal_stream(provider)
        .await
        .expect("deal stream opens");
    let proposal = DealProposal {
        payload_cid: "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
            .parse()
            .expect("valid cid"),
        id: DealId(1),
        params: Params::new(TokenAmount::zero(), total, 0),
        resume: None,
    };
    stream
        .write_proposal(&proposal)
        .await
        .expect("proposal written");
    let mut received = 0u64;
    while received < total {
        let response = stream.read_response().await.expect("response read");
        received += response
            .blocks
            .iter()
            .map(|b| b.data.len() as u64)
            .sum::<u64>();
    }
}

pub(crate) async fn bare_transfer(client: &Network, provider: PeerId, total: u64) {
    let mut stream = client
        .open_stream(provider, BARE)
        .await
        .expect("bare stream opens");
    stream
        .write_all(&total.to_be_bytes())
        .await
        .expect("request written");
    stream.flush().await.expect("flushed");
    let mut block = vec![0u8; BLOCK];
    let mut received = 0u64;
    while received < total {
        stream.read_exact(&mut block).await.expect("block read");
        received += BLOCK as u64;
    }
}

/// A provider and a client connected to it, on `runtime`; returns the client and the
/// provider's peer id (the provider lives as long as the runtime).
pub(crate) fn connected(runtime: &tokio::runtime::Runtime) -> (Network, PeerId) {
    runtime.block_on(async {
        let provider = provider().await;
        let client = Network::new(keys::generate(), Config::default())
            .await
            .expect("client starts");
        let addr = provider
            .listen_addrs()
            .await
            .expect("listen addrs")
            .remove(0);
        client
            .dial(provider.local_peer_id(), vec![addr])
            .await
            .expect("dial");
        let id = provider.local_peer_id();
        // The provider's handle must outlive the bench; leak it into the runtime.
        tokio::spawn(async move {
            let _keep = provider;
            std::future::pending::<()>().await;
        });
        (client, id)
    })
}
