//! The async adapter of one client deal: it carries out a [`ClientDeal`]'s actions on the
//! network, the blockstore, the node and the journal, and feeds the results back. Every
//! decision is the core's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rm_blockio::{Blockstore, SelectorVerifier};
use rm_network::DealStream;
use rm_network::libp2p::Multiaddr;
use rm_types::{
    Block, ChannelAvailableFunds, ChannelSetup, DealResponse, NodeError, RetrievalClientNode,
    SignedVoucher, TokenAmount,
};
use tokio::sync::{mpsc, oneshot};

use crate::client::{Inner, dag_selector};
use crate::deal::{AddFundsError, ClientAction, ClientDeal, Outbound, VerifyError};

/// What the client's API asks of a running deal.
#[derive(Debug)]
pub(crate) enum Command {
    Cancel(String),
    AddFunds {
        amount: TokenAmount,
        setup: ChannelSetup,
        reply: oneshot::Sender<Result<(), AddFundsError>>,
    },
}

/// The result of a request the driver carried out for the core.
enum Done {
    /// Boxed: a stream is large, the other results small.
    Connected(Result<Box<DealStream>, rm_network::Error>),
    Verified(Option<SelectorVerifier>, Result<bool, VerifyError>),
    ChannelSetup(Result<ChannelSetup, NodeError>),
    ChannelReady(Result<rm_types::Address, NodeError>),
    Lane(Result<u64, NodeError>),
    Voucher(Result<SignedVoucher, NodeError>),
    Funds(Result<ChannelAvailableFunds, NodeError>),
}

pub(crate) struct Driver<N> {
    pub(crate) inner: Arc<Inner<N>>,
    pub(crate) deal: ClientDeal,
    pub(crate) commands: mpsc::Receiver<Command>,
}

/// Runs a node call with a time limit.
async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, NodeError>>,
) -> Result<T, NodeError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(NodeError::Backend(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("node call timed out after {limit:?}"),
        )))),
    }
}

/// Reads the next response; pending forever without a stream (the branch is off then).
async fn read(stream: &mut Option<DealStream>) -> Result<DealResponse, rm_network::Error> {
    match stream {
        Some(s) => s.read_response().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

impl<N: RetrievalClientNode> Driver<N> {
    pub(crate) async fn run(mut self) {
        let id = self.deal.id().0;
        let mut stream: Option<DealStream> = None;
        let mut verifier: Option<SelectorVerifier> = None;
        let mut work: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        loop {
            while let Some(action) = self.deal.poll_action() {
                match action {
                    ClientAction::Publish { event, snapshot } => {
                        self.inner.set_unwritten(id, Some(&snapshot.state));
                        self.inner.deals.publish(&id, &event, &snapshot);
                    }
                    ClientAction::Persist { event, snapshot } => {
                        if let Err(e) = self.inner.deals.record(&id, &event, &snapshot).await {
                            // The deal stays where the journal has it and resumes from
                            // there when the client is opened again.
                            tracing::warn!(deal = id, error = %e, "client deal not persisted; stopping it");
                            return self.stop(stream).await;
                        }
                        self.inner.set_unwritten(id, None);
                    }
                    ClientAction::Connect => work.push(self.connect()),
                    ClientAction::Send(message) => {
                        let Some(s) = stream.as_mut() else { continue };
                        let written = match &message {
                            Outbound::Proposal(p) => s.write_proposal(p).await,
                            Outbound::Payment(p) => s.write_payment(p).await,
                            Outbound::Cancel(c) => s.write_cancel(c).await,
                        };
                        if let Err(e) = written {
                            stream = None;
                            self.deal.handle_stream_lost(Instant::now(), e);
                        }
                    }
                    ClientAction::Close => {
                        if let Some(s) = stream.take()
                            && let Err(e) = s.close().await
                        {
                            tracing::debug!(deal = id, error = %e, "closing the deal stream");
                        }
                    }
                    ClientAction::Reset => {
                        if let Some(s) = stream.take() {
                            s.reset();
                        }
                    }
                    ClientAction::Verify(blocks) => work.push(self.verify(verifier.take(), blocks)),
                    ClientAction::SetupChannel {
                        client,
                        miner,
                        funds,
                    } => {
                        let inner = Arc::clone(&self.inner);
                        work.push(Box::pin(async move {
                            let node = &inner.node;
                            Done::ChannelSetup(
                                bounded(inner.config.node_timeout, async {
                                    let head = node.chain_head().await?;
                                    node.get_or_create_payment_channel(
                                        &client, &miner, &funds, &head,
                                    )
                                    .await
                                })
                                .await,
                            )
                        }));
                    }
                    ClientAction::WaitChannel(wait) => {
                        let inner = Arc::clone(&self.inner);
                        work.push(Box::pin(async move {
                            let ready = inner.node.wait_for_payment_channel_ready(&wait);
                            Done::ChannelReady(bounded(inner.config.node_timeout, ready).await)
                        }));
                    }
                    ClientAction::AllocateLane(channel) => {
                        let inner = Arc::clone(&self.inner);
                        work.push(Box::pin(async move {
                            let lane = inner.node.allocate_lane(&channel);
                            Done::Lane(bounded(inner.config.node_timeout, lane).await)
                        }));
                    }
                    ClientAction::CreateVoucher {
                        channel,
                        lane,
                        amount,
                    } => {
                        let inner = Arc::clone(&self.inner);
                        work.push(Box::pin(async move {
                            let node = &inner.node;
                            Done::Voucher(
                                bounded(inner.config.node_timeout, async {
                                    let head = node.chain_head().await?;
                                    node.create_payment_voucher(&channel, &amount, lane, &head)
                                        .await
                                })
                                .await,
                            )
                        }));
                    }
                    ClientAction::CheckFunds(channel) => {
                        let inner = Arc::clone(&self.inner);
                        work.push(Box::pin(async move {
                            let funds = inner.node.check_available_funds(&channel);
                            Done::Funds(bounded(inner.config.node_timeout, funds).await)
                        }));
                    }
                    ClientAction::Finished(outcome) => {
                        tracing::debug!(deal = id, ?outcome, "client deal finished");
                        return self.stop(stream).await;
                    }
                }
            }
            let deadline = self.deal.poll_timeout();
            tokio::select! {
                Some(done) = work.next(), if !work.is_empty() => {
                    let now = Instant::now();
                    match done {
                        Done::Connected(Ok(s)) => {
                            if self.deal.handle_connected(now) {
                                stream = Some(*s);
                            } else {
                                s.reset();
                            }
                        }
                        Done::Connected(Err(e)) => self.deal.handle_stream_lost(now, e),
                        Done::Verified(v, result) => {
                            verifier = v;
                            self.deal.handle_verified(now, result);
                        }
                        Done::ChannelSetup(r) => self.deal.handle_channel_setup(now, r),
                        Done::ChannelReady(r) => self.deal.handle_channel_ready(now, r),
                        Done::Lane(r) => self.deal.handle_lane(now, r),
                        Done::Voucher(r) => self.deal.handle_voucher(now, r),
                        Done::Funds(r) => self.deal.handle_available_funds(now, r),
                    }
                }
                read = read(&mut stream), if self.deal.wants_message() => {
                    let now = Instant::now();
                    match read {
                        Ok(response) => self.deal.handle_response(now, response),
                        Err(e) if e.is_peer_violation() => {
                            stream = None;
                            self.deal.handle_bad_message(now, e);
                        }
                        Err(e) => {
                            stream = None;
                            self.deal.handle_stream_lost(now, e);
                        }
                    }
                }
                () = sleep_until(deadline) => self.deal.handle_timeout(Instant::now()),
                command = self.commands.recv() => match command {
                    Some(Command::Cancel(reason)) => self.deal.cancel(Instant::now(), reason),
                    Some(Command::AddFunds { amount, setup, reply }) => {
                        let _ = reply.send(self.deal.add_funds(Instant::now(), amount, setup));
                    }
                    // The client is closing; the deal resumes when it is opened again.
                    None => return self.stop(stream).await,
                },
            }
        }
    }

    /// Leaves the deal: the stream is closed, the runner unregistered.
    async fn stop(&self, stream: Option<DealStream>) {
        if let Some(s) = stream
            && let Err(e) = s.close().await
        {
            tracing::debug!(deal = self.deal.id().0, error = %e, "closing the deal stream");
        }
        self.inner.unregister(self.deal.id().0);
    }

    fn connect(&self) -> BoxFuture<'static, Done> {
        let network = self.inner.network.clone();
        let state = self.deal.state();
        let peer = rm_network::from_rm_peer(&state.provider);
        let addrs: Vec<Multiaddr> = state
            .provider_addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        Box::pin(async move {
            let result = async {
                let peer = peer?;
                network.dial(peer, addrs).await?;
                network.open_deal_stream(peer).await
            }
            .await;
            Done::Connected(result.map(Box::new))
        })
    }

    /// Verifies and stores blocks on the blocking pool; the verifier is built from the
    /// blockstore the first time (a resumed deal replays what it already holds).
    fn verify(
        &self,
        verifier: Option<SelectorVerifier>,
        blocks: Vec<Block>,
    ) -> BoxFuture<'static, Done> {
        let store = Arc::clone(&self.inner.blockstore);
        let state = self.deal.state();
        let root = state.proposal.payload_cid;
        let params = state.proposal.params.clone();
        let from = state.blocks_received;
        Box::pin(async move {
            let task = tokio::task::spawn_blocking(move || {
                let mut verifier = match verifier {
                    Some(v) if v.blocks_verified() == from => v,
                    _ => {
                        let selector = match dag_selector(&params) {
                            Ok(s) => s,
                            Err(e) => return (None, Err(VerifyError::Block(e.to_string()))),
                        };
                        match SelectorVerifier::resume(root, &selector, from, store.as_ref()) {
                            Ok(v) => v,
                            Err(e) => {
                                return (
                                    None,
                                    Err(VerifyError::Storage(format!(
                                        "resuming verification: {e}"
                                    ))),
                                );
                            }
                        }
                    }
                };
                let result = verify_and_store(&mut verifier, store.as_ref(), blocks);
                // A rejected response leaves the verifier part-way through it: rebuild.
                (result.is_ok().then_some(verifier), result)
            });
            match task.await {
                Ok((verifier, result)) => Done::Verified(verifier, result),
                Err(e) => Done::Verified(None, Err(VerifyError::Storage(e.to_string()))),
            }
        })
    }
}

/// Verifies every block as the next one of the traversal, then stores them all; nothing
/// is stored if one fails. Returns whether the traversal is complete.
fn verify_and_store(
    verifier: &mut SelectorVerifier,
    store: &dyn Blockstore,
    blocks: Vec<Block>,
) -> Result<bool, VerifyError> {
    let mut verified = Vec::with_capacity(blocks.len());
    for block in blocks {
        let v = verifier
            .verify(&block)
            .map_err(|e| VerifyError::Block(e.to_string()))?;
        verified.push((v.cid, block.data));
    }
    store
        .put_many(&verified)
        .map_err(|e| VerifyError::Storage(e.to_string()))?;
    Ok(verifier.is_done())
}
