//! The async adapter of one provider deal: it carries out a [`ProviderDeal`]'s actions on
//! the stream, the blockstore, the unsealer, the node and the journal, and feeds the
//! results back. Every decision is the core's.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rm_blockio::{BlockReader, Blockstore};
use rm_network::DealStream;
use rm_types::{
    Address, ClientMessage, DealResponse, NodeError, RetrievalProviderNode, SignedVoucher,
    TokenAmount,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::deal::{Located, ProviderAction, ProviderDeal, ReadBlocks};
use crate::provider::{DealKey, IN_FLIGHT_UNIT, Inner, dag_selector, lock};
use crate::queries;
use crate::sessions::{Attach, refuse_stream};

type Reader = BlockReader<Arc<dyn Blockstore>>;

enum Done {
    Unsealed(Result<(), String>),
    /// Blocks read, with the room they take in the provider's in-flight budget.
    Read(
        Option<Reader>,
        Result<ReadBlocks, String>,
        Option<OwnedSemaphorePermit>,
    ),
    Counted(Result<u64, String>),
    Saved(Result<TokenAmount, NodeError>),
}

pub(crate) struct Driver<N> {
    inner: Arc<Inner<N>>,
    key: DealKey,
    deal: ProviderDeal,
    stream: Option<DealStream>,
    attach: mpsc::Receiver<Attach>,
    /// The client's address when the deal began (what its credit is counted by).
    ip: Option<std::net::IpAddr>,
}

async fn read(stream: &mut Option<DealStream>) -> Result<ClientMessage, rm_network::Error> {
    match stream {
        Some(s) => s.read_client_message().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

impl<N: RetrievalProviderNode> Driver<N> {
    pub(crate) fn new(
        inner: Arc<Inner<N>>,
        key: DealKey,
        deal: ProviderDeal,
        stream: Option<DealStream>,
        attach: mpsc::Receiver<Attach>,
    ) -> Self {
        let ip = stream.as_ref().and_then(DealStream::remote_ip);
        let mut driver = Driver {
            inner,
            key,
            deal,
            stream: None,
            attach,
            ip,
        };
        if let Some(s) = stream {
            driver.use_stream(s);
        }
        driver
    }

    /// The core's deadlines govern a deal; the stream's read timeout must not cut a client
    /// that is receiving blocks or adding funds.
    fn use_stream(&mut self, mut stream: DealStream) {
        stream.set_read_timeout(self.inner.config.deal.payment_timeout);
        self.stream = Some(stream);
    }

    pub(crate) async fn run(mut self) {
        let mut reader: Option<Reader> = None;
        let mut work: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        // A response is written after the actions that follow it are started, when those
        // are only the read of the next blocks, a voucher's save (and notices): the disk
        // read and its hash checks, and the voucher's check, run while this response goes
        // out. Any other action waits for the write, so the order the core gave is kept for
        // everything the client or journal sees.
        let mut unsent: Option<DealResponse> = None;
        // The in-flight room of the blocks last read, given back once they are written.
        let mut held: Option<OwnedSemaphorePermit> = None;
        loop {
            while let Some(action) = self.deal.poll_action() {
                if !matches!(
                    action,
                    ProviderAction::ReadBlocks { .. }
                        | ProviderAction::SaveVoucher { .. }
                        | ProviderAction::Publish { .. }
                ) && let Some(response) = unsent.take()
                {
                    self.write(&response).await;
                    drop(held.take());
                }
                let now = Instant::now();
                match action {
                    ProviderAction::Publish { event, snapshot } => {
                        self.inner.deals.publish(&self.key, &event, &snapshot);
                        // Blocks sent are counted against the peer's credit at once,
                        // written or not.
                        if !snapshot.state.status.is_final() {
                            lock(&self.inner.credit).update(&self.key, self.ip, &snapshot.state);
                        }
                    }
                    ProviderAction::Persist { event, snapshot } => {
                        if let Err(e) = self.inner.deals.record(&self.key, &event, &snapshot).await
                        {
                            tracing::warn!(deal = self.key.1, error = %e, "provider deal not persisted; stopping it");
                            return self.stop().await;
                        }
                        let mut credit = lock(&self.inner.credit);
                        if snapshot.state.status.is_final() {
                            credit.finish(&self.key, self.ip, &snapshot.state, now);
                        } else {
                            credit.update(&self.key, self.ip, &snapshot.state);
                        }
                    }
                    ProviderAction::Locate => {
                        let proposal = &self.deal.state().proposal;
                        let found = self
                            .inner
                            .locate(&proposal.payload_cid, proposal.params.piece_cid.as_ref())
                            .map(|l| match l {
                                queries::Located::Nowhere => Located::Nowhere,
                                _ => Located::Here,
                            });
                        self.deal.handle_located(now, found);
                    }
                    ProviderAction::Decide => {
                        let state = self.deal.state();
                        let decision = if state.proposal.params.is_free() {
                            Ok(())
                        } else {
                            lock(&self.inner.credit).admit(&self.key.0, self.ip, now)
                        };
                        let decision = decision.and_then(|()| self.inner.decide(state));
                        self.deal.handle_decision(now, decision);
                    }
                    ProviderAction::Unseal => {
                        let inner = Arc::clone(&self.inner);
                        let proposal = self.deal.state().proposal.clone();
                        let key = self.key.clone();
                        work.push(Box::pin(async move {
                            Done::Unsealed(inner.unseal(&key, &proposal).await)
                        }));
                    }
                    ProviderAction::ReadBlocks {
                        from,
                        max_blocks,
                        max_bytes,
                        stop_after,
                    } => {
                        // Started at once (not when `work` is next polled), so that it
                        // overlaps the write of the response before it.
                        let read = tokio::spawn(self.read_blocks(
                            reader.take(),
                            from,
                            max_blocks,
                            max_bytes,
                            stop_after,
                        ));
                        work.push(Box::pin(async move {
                            read.await
                                .unwrap_or_else(|e| Done::Read(None, Err(e.to_string()), None))
                        }));
                    }
                    ProviderAction::CountBytes { blocks } => work.push(self.count(blocks)),
                    ProviderAction::SaveVoucher {
                        channel,
                        voucher,
                        expected,
                    } => {
                        // Started at once, like a read: it overlaps the write before it.
                        let save = tokio::spawn(self.save(channel, *voucher, expected));
                        work.push(Box::pin(async move {
                            save.await.unwrap_or_else(|e| {
                                Done::Saved(Err(NodeError::Backend(e.to_string().into())))
                            })
                        }));
                    }
                    ProviderAction::Send(response) => unsent = Some(response),
                    ProviderAction::Close => {
                        if let Some(mut s) = self.stream.take() {
                            // Everything is written; a peer already gone changes nothing.
                            let _ = s.finish().await;
                        }
                    }
                    ProviderAction::Reset => {
                        if let Some(s) = self.stream.take() {
                            s.reset();
                        }
                    }
                    ProviderAction::Finished(outcome) => {
                        tracing::debug!(deal = self.key.1, ?outcome, "provider deal finished");
                        return self.stop().await;
                    }
                }
            }
            if let Some(response) = unsent.take() {
                self.write(&response).await;
                drop(held.take());
                // A failed write is news for the core: see what it wants now.
                continue;
            }
            let deadline = self.deal.poll_timeout();
            // Biased, the client's message first: a payment is read as soon as the
            // response being written is out, not after however many more reads win a
            // random pick (each read leads to another response written).
            tokio::select! {
                biased;
                message = read(&mut self.stream), if self.deal.wants_message() => {
                    let now = Instant::now();
                    match message {
                        Ok(m) => self.deal.handle_message(now, m),
                        Err(e) if e.is_peer_violation() => {
                            tracing::debug!(deal = self.key.1, error = %e, "bad client message");
                            self.stream = None;
                            self.deal.handle_bad_message(now, e);
                        }
                        Err(e) => {
                            tracing::debug!(deal = self.key.1, error = %e, "deal stream lost");
                            self.stream = None;
                            self.deal.handle_stream_lost(now);
                        }
                    }
                }
                Some(done) = work.next(), if !work.is_empty() => {
                    let now = Instant::now();
                    match done {
                        Done::Unsealed(r) => self.deal.handle_unsealed(now, r),
                        Done::Read(r, result, permit) => {
                            reader = r;
                            held = permit;
                            self.deal.handle_read(now, result);
                        }
                        Done::Counted(r) => self.deal.handle_counted(now, r),
                        Done::Saved(r) => self.deal.handle_voucher_saved(now, r),
                    }
                }
                () = sleep_until(deadline) => self.deal.handle_timeout(Instant::now()),
                resumed = self.attach.recv() => {
                    let Some(resumed) = resumed else { continue };
                    let (stream, proposal) = *resumed;
                    match self.deal.handle_resume(Instant::now(), &proposal) {
                        Ok(()) => {
                            if let Some(old) = self.stream.take() {
                                old.reset();
                            }
                            self.use_stream(stream);
                        }
                        Err(r) => refuse_stream(stream, &r).await,
                    }
                }
            }
        }
    }

    /// Writes a response; a failure loses the stream (the core hears of it).
    async fn write(&mut self, response: &DealResponse) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        if let Err(e) = s.write_response(response).await {
            tracing::debug!(deal = self.key.1, error = %e, "deal stream lost");
            self.stream = None;
            self.deal.handle_stream_lost(Instant::now());
        }
    }

    /// Leaves the deal: streams that came to resume it meanwhile hear how it stands, and
    /// the session is unregistered.
    async fn stop(mut self) {
        lock(&self.inner.sessions).remove(&self.key);
        self.inner.release(&self.key);
        self.attach.close();
        while let Ok(resumed) = self.attach.try_recv() {
            let (stream, proposal) = *resumed;
            let Err(r) = self.deal.handle_resume(Instant::now(), &proposal) else {
                continue;
            };
            refuse_stream(stream, &r).await;
        }
        if let Some(mut s) = self.stream.take() {
            let _ = s.finish().await;
        }
    }

    fn read_blocks(
        &self,
        reader: Option<Reader>,
        from: u64,
        max_blocks: usize,
        max_bytes: usize,
        stop_after: Option<u64>,
    ) -> BoxFuture<'static, Done> {
        let inner = Arc::clone(&self.inner);
        let key = self.key.clone();
        let proposal = self.deal.state().proposal.clone();
        Box::pin(async move {
            // Room in the provider's budget for what this read may hold until it is
            // written: the response's byte limit, or the bytes up to the payment point
            // (the last block may go past either; see `Config::max_bytes_in_flight`).
            let units = stop_after
                .map_or(max_bytes, |s| {
                    max_bytes.min(usize::try_from(s).unwrap_or(usize::MAX))
                })
                .div_ceil(IN_FLIGHT_UNIT)
                .clamp(
                    1,
                    inner
                        .config
                        .max_bytes_in_flight
                        .div_ceil(IN_FLIGHT_UNIT)
                        .max(1),
                );
            // The semaphore is never closed; were it, the read would go on unbudgeted.
            let permit = Arc::clone(&inner.in_flight)
                .acquire_many_owned(u32::try_from(units).unwrap_or(u32::MAX))
                .await
                .ok();
            let store = match inner.source(&key, &proposal).await {
                Ok(store) => store,
                Err(e) => return Done::Read(None, Err(e), permit),
            };
            let task = tokio::task::spawn_blocking(move || {
                let mut reader = match reader {
                    Some(r) if r.position() == from => r,
                    _ => {
                        let opened = dag_selector(&proposal.params).and_then(|selector| {
                            BlockReader::resume(store, proposal.payload_cid, &selector, from)
                                .map_err(|e| e.to_string())
                        });
                        match opened {
                            Ok(r) => r,
                            Err(e) => return (None, Err(e)),
                        }
                    }
                };
                let mut blocks = Vec::new();
                let mut bytes = 0u64;
                while blocks.len() < max_blocks && bytes < max_bytes as u64 {
                    match reader.next_block() {
                        Ok(Some(block)) => {
                            bytes += block.data.len() as u64;
                            blocks.push(block);
                            if stop_after.is_some_and(|s| bytes >= s) {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return (None, Err(e.to_string())),
                    }
                }
                let done = reader.is_done();
                (Some(reader), Ok(ReadBlocks { blocks, done }))
            });
            match task.await {
                Ok((reader, result)) => Done::Read(reader, result, permit),
                Err(e) => Done::Read(None, Err(e.to_string()), permit),
            }
        })
    }

    /// Bytes of block data in the first `blocks` blocks of the deal's traversal (read on
    /// the blocking pool: a resume late in a large DAG reads much of it).
    fn count(&self, blocks: u64) -> BoxFuture<'static, Done> {
        let inner = Arc::clone(&self.inner);
        let key = self.key.clone();
        let proposal = self.deal.state().proposal.clone();
        Box::pin(async move {
            let store = match inner.source(&key, &proposal).await {
                Ok(store) => store,
                Err(e) => return Done::Counted(Err(e)),
            };
            let count = move || {
                let selector = dag_selector(&proposal.params)?;
                let mut reader = BlockReader::new(store, proposal.payload_cid, &selector)
                    .map_err(|e| e.to_string())?;
                let mut bytes = 0u64;
                for _ in 0..blocks {
                    match reader.next_block() {
                        Ok(Some(block)) => bytes += block.data.len() as u64,
                        Ok(None) => return Err("the DAG has fewer blocks".to_owned()),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(bytes)
            };
            Done::Counted(match tokio::task::spawn_blocking(count).await {
                Ok(r) => r,
                Err(e) => Err(format!("counting bytes: {e}")),
            })
        })
    }

    /// Saves a voucher through the node, once its lane is known to pay this deal only.
    fn save(
        &self,
        channel: Address,
        voucher: SignedVoucher,
        expected: TokenAmount,
    ) -> BoxFuture<'static, Done> {
        let inner = Arc::clone(&self.inner);
        let key = self.key.clone();
        let first = self.deal.state().lane.is_none();
        Box::pin(async move {
            let taken = || NodeError::InvalidVoucher("the voucher's lane pays another deal".into());
            let lanes = &inner.lanes;
            // One voucher at a time from the owner check to the binding.
            let _guard = lanes.guard.lock().await;
            match lanes.owner(&channel, voucher.lane) {
                Ok(Some(owner)) if owner != key => return Done::Saved(Err(taken())),
                Ok(_) => {}
                Err(e) => return Done::Saved(Err(NodeError::Backend(e.into()))),
            }
            let node = &inner.node;
            let saved = async {
                let head = node.chain_head().await?;
                node.save_payment_voucher(&channel, &voucher, &expected, &head)
                    .await
            }
            .await;
            // Bound only once a voucher on it was accepted: a bogus voucher naming someone
            // else's channel cannot take their lane.
            if saved.is_ok()
                && first
                && let Err(e) = lanes.bind(&channel, voucher.lane, &key)
            {
                return Done::Saved(Err(NodeError::Backend(e.into())));
            }
            Done::Saved(saved)
        })
    }
}
