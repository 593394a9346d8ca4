//! Deal streams as they arrive: a new deal gets a driver of its own; a stream that
//! resumes a running deal goes to that deal's driver; a stream for a finished deal is
//! answered from its record (the rest of a completed deal's blocks, or how it ended).

use std::sync::Arc;
use std::time::Instant;

use rm_blockio::BlockReader;
use rm_network::DealStream;
use rm_types::{
    DealId, DealProposal, DealResponse, DealStatus, RetrievalProviderNode, TokenAmount,
};
use tokio::sync::mpsc;

use crate::deal::{Finished, ProviderDeal, answer_finished};
use crate::driver::Driver;
use crate::fsm::ProviderState;
use crate::provider::{DealKey, Provider, dag_selector, lock};

/// A running deal: its driver's task, and where to hand it a stream that resumes it.
pub(crate) struct Session {
    pub(crate) attach: mpsc::Sender<Attach>,
    pub(crate) task: tokio::task::AbortHandle,
}

/// How many resuming streams may wait for one deal's driver.
const ATTACH_QUEUE: usize = 2;

/// A stream resuming a deal, with its proposal. Boxed: a channel allocates room for 32
/// items at once whatever its capacity, and every running deal has one (unboxed, that was
/// 24 KiB per deal).
pub(crate) type Attach = Box<(DealStream, DealProposal)>;

fn response(id: DealId, status: DealStatus, message: String) -> DealResponse {
    DealResponse {
        status,
        id,
        payment_owed: TokenAmount::zero(),
        message,
        blocks: Vec::new(),
    }
}

/// Answers a stream the provider will not serve with `r`, then closes it. The peer may
/// already be gone; that is only logged.
pub(crate) async fn refuse_stream(mut stream: DealStream, r: &DealResponse) {
    let peer = stream.peer();
    let sent = match stream.write_response(r).await {
        Ok(()) => stream.close().await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::debug!(%peer, error = %e, "refusal not delivered");
    }
}

impl<N: RetrievalProviderNode> Provider<N> {
    /// Starts the driver of `deal`, with `stream` if it has one.
    pub(crate) fn spawn(&self, key: DealKey, deal: ProviderDeal, stream: Option<DealStream>) {
        let (attach, attached) = mpsc::channel(ATTACH_QUEUE);
        // Held until the session is registered, so the driver's own removal comes later.
        let mut sessions = lock(&self.inner.sessions);
        let driver = Driver::new(Arc::clone(&self.inner), key.clone(), deal, stream, attached);
        let task = tokio::spawn(driver.run());
        sessions.insert(
            key,
            Session {
                attach,
                task: task.abort_handle(),
            },
        );
    }

    /// Serves one inbound deal stream: a new deal or a resumed one.
    pub(crate) async fn handle_stream(&self, mut stream: DealStream) {
        let proposal = match stream.read_proposal().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(peer = %stream.peer(), error = %e, "no deal proposal");
                return;
            }
        };
        let id = proposal.id;
        let key: DealKey = (stream.peer().to_bytes(), id.0);
        tracing::debug!(deal = id.0, resume = ?proposal.resume, "deal proposal");
        let running = lock(&self.inner.sessions)
            .get(&key)
            .map(|s| s.attach.clone());
        if let Some(attach) = running {
            if let Err(e) = attach.try_send(Box::new((stream, proposal))) {
                let (stream, _) = *e.into_inner();
                let r = response(
                    id,
                    DealStatus::Errored,
                    "the deal is busy; resume again".into(),
                );
                refuse_stream(stream, &r).await;
            }
            return;
        }
        let stored = match self.inner.deals.snapshot(&key) {
            Ok(s) => s,
            Err(e) => {
                let r = response(id, DealStatus::Errored, format!("provider storage: {e}"));
                return refuse_stream(stream, &r).await;
            }
        };
        let config = self.inner.config.deal.clone();
        match stored {
            None if proposal.resume.is_some_and(|r| r.blocks > 0) => {
                let r = response(id, DealStatus::Errored, "unknown deal to resume".into());
                refuse_stream(stream, &r).await;
            }
            None => {
                let state = ProviderState::new(proposal, rm_network::to_rm_peer(&stream.peer()));
                if let Err(e) = self.inner.deals.begin(key.clone(), state.clone()).await {
                    let r = response(id, DealStatus::Errored, format!("provider storage: {e}"));
                    return refuse_stream(stream, &r).await;
                }
                let deal = ProviderDeal::new(id, state, self.ask(), Instant::now(), config);
                self.spawn(key, deal, Some(stream));
            }
            Some(snapshot) if snapshot.state.status.is_final() => {
                self.finished(stream, &snapshot.state, &proposal).await;
            }
            Some(snapshot) => {
                // Unfinished but not running (a driver that stopped on a storage error):
                // run it again with the new stream.
                let mut deal =
                    ProviderDeal::restore(id, snapshot, self.ask(), Instant::now(), config);
                match deal.handle_resume(Instant::now(), &proposal) {
                    Ok(()) => self.spawn(key, deal, Some(stream)),
                    Err(r) => refuse_stream(stream, &r).await,
                }
            }
        }
    }

    /// A stream for a deal that has ended ([`answer_finished`]).
    async fn finished(&self, stream: DealStream, deal: &ProviderState, proposal: &DealProposal) {
        match answer_finished(deal, proposal) {
            Finished::Refuse(r) => refuse_stream(stream, &r).await,
            Finished::Tail { from, until } => self.serve_tail(stream, deal, from, until).await,
        }
    }

    /// Sends the blocks after `from` of a completed (fully paid) deal, then `Completed`.
    async fn serve_tail(
        &self,
        mut stream: DealStream,
        deal: &ProviderState,
        from: u64,
        until: u64,
    ) {
        let id = deal.proposal.id;
        // This loop reads on the async thread: a piece still being unsealed into the cache
        // is waited for first, so no read below blocks on the unseal.
        let store = match self.inner.open_source(&deal.proposal).await {
            Ok((store, Some(blocks))) => blocks
                .ready_all()
                .await
                .map(|()| store)
                .map_err(|e| e.to_string()),
            Ok((store, None)) => Ok(store),
            Err(e) => Err(e),
        };
        let store = match store {
            Ok(s) => s,
            Err(e) => return refuse_stream(stream, &response(id, DealStatus::Errored, e)).await,
        };
        let reader = dag_selector(&deal.proposal.params).and_then(|selector| {
            BlockReader::resume(store, deal.proposal.payload_cid, &selector, from)
                .map_err(|e| e.to_string())
        });
        let mut reader = match reader {
            Ok(r) => r,
            Err(e) => return refuse_stream(stream, &response(id, DealStatus::Errored, e)).await,
        };
        let max_bytes = self.inner.config.deal.max_response_bytes;
        let max_blocks = self.inner.config.deal.max_blocks_per_response.max(1);
        if stream
            .write_response(&response(id, DealStatus::Accepted, String::new()))
            .await
            .is_err()
        {
            return;
        }
        // Never past what the deal sent (and was paid for).
        let mut position = from;
        loop {
            let mut r = response(id, DealStatus::Ongoing, String::new());
            let mut bytes = 0;
            while r.blocks.len() < max_blocks && bytes < max_bytes && position < until {
                match reader.next_block() {
                    Ok(Some(block)) => {
                        bytes += block.data.len();
                        position += 1;
                        r.blocks.push(block);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        r.status = DealStatus::Errored;
                        r.message = e.to_string();
                        r.blocks.clear();
                        break;
                    }
                }
            }
            let done = position >= until || reader.is_done();
            if done && r.status != DealStatus::Errored {
                r.status = DealStatus::Completed;
            }
            let last = done || r.status == DealStatus::Errored;
            if stream.write_response(&r).await.is_err() || last {
                let _ = stream.finish().await;
                return;
            }
        }
    }
}
