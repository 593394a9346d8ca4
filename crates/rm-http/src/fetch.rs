//! The client: [`HttpFetcher`] fetches a [`Spec`] from trustless gateways as CAR streams,
//! verifies every block in walk order with the `SelectorVerifier` (see [`crate::walk`])
//! before it is stored, and resumes.
//!
//! **Resume.** Verified blocks go to the blockstore as they are accepted, and the number
//! of walk steps whose blocks are stored is saved in a keyspace (the progress record,
//! keyed by the request). A new run replays the saved steps from the store, then keeps
//! skipping while the next block is already stored (blocks are content-addressed and only
//! verified ones are stored), and asks only for the rest: each remaining sub-DAG by its
//! CID, a partly needed file node with the `entity-bytes` still missing, a path's
//! remaining segments ([`crate::walk::Walk::next_ask`]). Nothing stored is asked for
//! again. Verified blocks are written in batches of at most 1 MiB (a block of 1 MiB or
//! more is a batch of its own) by a writer thread, one batch at a time while the next is
//! received and verified; progress is reported once a batch is stored. A run that dies
//! loses at most what it had not stored: the verified blocks not queued yet (under
//! 1 MiB), the one batch being written and the block it was receiving.
//!
//! **Providers.** A provider that fails — no connection, an error status, a response
//! that is not a `dups=y` DFS CAR, a block that does not verify or comes out of order, a
//! CAR that ends early, a stall — is left for the next one, which continues from the
//! same verified state. A rejected block changes nothing.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use http::{StatusCode, header};
use http_body_util::BodyExt;
use rm_blockio::{Blockstore, SelectorVerifier};
use rm_store::Keyspace;
use rm_types::Block;

use crate::car::{self, CarError, Decoder, Event};
use crate::client::{Connection, Provider};
use crate::walk::{Spec, Walk, WalkError};

/// The keyspace of fetch progress records.
pub const PROGRESS_KEYSPACE: &str = "http-fetches";

/// Why a fetch (or one provider's part of it) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// A provider address is not usable.
    #[error("bad provider address {0}")]
    BadProvider(String),
    /// No connection.
    #[error("connecting: {0}")]
    Connect(String),
    /// Nothing arrived in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The provider answered with an error status.
    #[error("the provider answered {status}: {message}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the body.
        message: String,
    },
    /// The response is not a CAR this client can verify in order.
    #[error("the response is not a dups=y DFS CAR (Content-Type {0:?})")]
    NotACar(String),
    /// The CAR is malformed or truncated.
    #[error("CAR: {0}")]
    Car(#[from] CarError),
    /// A block was refused: wrong, out of order, undecodable.
    #[error("block refused: {0}")]
    Refused(#[source] WalkError),
    /// The CAR ended before every block of the request arrived.
    #[error("incomplete CAR: the response ended before the request was answered")]
    Incomplete,
    /// The CAR went on after the request was answered.
    #[error("the CAR has blocks the request did not ask for")]
    Extra,
    /// Every provider failed.
    #[error("every provider failed; last: {0}")]
    AllFailed(Box<FetchError>),
    /// No provider was given.
    #[error("no provider to fetch from")]
    NoProvider,
    /// Walking the DAG failed locally.
    #[error(transparent)]
    Walk(WalkError),
    /// The blockstore failed.
    #[error(transparent)]
    Blockstore(#[from] rm_blockio::blockstore::Error),
    /// The progress record could not be read or written.
    #[error(transparent)]
    Db(#[from] rm_store::Error),
}

impl FetchError {
    /// Whether the failure is the provider's (another one may do better).
    fn is_provider_fault(&self) -> bool {
        !matches!(
            self,
            FetchError::Blockstore(_) | FetchError::Db(_) | FetchError::Walk(_)
        )
    }
}

/// Settings of an [`HttpFetcher`]; every one has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchConfig {
    /// Time to connect (default 10 s).
    pub connect_timeout: Duration,
    /// Longest wait for response headers or for the next bytes of a body (default 30 s).
    pub idle_timeout: Duration,
    /// CAR decoder caps (default: 2 MiB blocks).
    pub limits: car::Limits,
    /// Rounds through the provider list before giving up (default 2).
    pub rounds: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            limits: car::Limits::default(),
            rounds: 2,
        }
    }
}

/// Progress of a fetch, reported after each stored batch and each response.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FetchProgress {
    /// Walk steps done (blocks verified, in all runs).
    pub steps: u64,
    /// Blocks verified in this run.
    pub blocks: u64,
    /// Bytes of verified block data in this run.
    pub block_bytes: u64,
    /// Body bytes received in this run (CAR framing included).
    pub wire_bytes: u64,
    /// Requests made in this run.
    pub requests: u64,
    /// The provider in use.
    pub provider: String,
}

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FetchReport {
    /// The terminal element (the file or directory at the end of the path).
    pub terminal: Option<Cid>,
    /// Walk steps in all (the request's blocks, duplicates counted).
    pub steps: u64,
    /// Steps already done when this run started (0: a fresh fetch).
    pub resumed_from: u64,
    /// This run's counters.
    pub progress: FetchProgress,
    /// Body bytes received for this request over every run, as far as recorded.
    pub wire_bytes_all_runs: u64,
    /// Providers that failed during this run, with why.
    pub failures: Vec<String>,
}

/// The saved state of a fetch.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Record {
    steps: u64,
    wire_bytes: u64,
    block_bytes: u64,
}

/// Fetches and verifies over HTTP into a blockstore (see the module docs).
#[derive(Clone)]
pub struct HttpFetcher {
    store: Arc<dyn Blockstore>,
    progress: Option<Keyspace>,
    config: FetchConfig,
}

impl std::fmt::Debug for HttpFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Verified blocks on their way to the store, with the progress they make, and who
/// waits for them to be stored.
struct Batch {
    blocks: Vec<(Cid, Bytes)>,
    record: Record,
    done: tokio::sync::oneshot::Sender<Result<(), FetchError>>,
}

/// The thread that stores verified blocks and then records the progress they make. It
/// runs beside the async side: while one batch is written, the next is received and
/// verified. At most one batch is queued or being written at a time.
struct Writer {
    tx: Option<tokio::sync::mpsc::Sender<Batch>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The batch being written: its progress, and the answer to wait for.
    in_flight: Option<(
        FetchProgress,
        tokio::sync::oneshot::Receiver<Result<(), FetchError>>,
    )>,
}

fn stopped() -> FetchError {
    FetchError::Walk(WalkError::Unsupported("the block writer stopped".into()))
}

impl Writer {
    fn start(store: Arc<dyn Blockstore>, progress: Option<Keyspace>, key: Vec<u8>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
        let thread = std::thread::spawn(move || {
            while let Some(batch) = rx.blocking_recv() {
                let result = store
                    .put_many(&batch.blocks)
                    .map_err(FetchError::from)
                    .and_then(|()| match &progress {
                        Some(ks) => {
                            let value = serde_json::to_vec(&batch.record).unwrap_or_default();
                            ks.put(&key, &value).map_err(FetchError::from)
                        }
                        None => Ok(()),
                    });
                let _ = batch.done.send(result);
            }
        });
        Self {
            tx: Some(tx),
            thread: Some(thread),
            in_flight: None,
        }
    }

    /// Waits for the batch being written; returns its progress once it is stored.
    async fn settle(&mut self) -> Result<Option<FetchProgress>, FetchError> {
        match self.in_flight.take() {
            None => Ok(None),
            Some((progress, wait)) => {
                wait.await.map_err(|_| stopped())??;
                Ok(Some(progress))
            }
        }
    }

    /// Queues `blocks` (recording `record` once they are stored) after the batch before
    /// them is stored; returns that batch's progress.
    async fn write(
        &mut self,
        blocks: Vec<(Cid, Bytes)>,
        record: Record,
        progress: FetchProgress,
    ) -> Result<Option<FetchProgress>, FetchError> {
        let stored = self.settle().await?;
        let (done, wait) = tokio::sync::oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        tx.send(Batch {
            blocks,
            record,
            done,
        })
        .await
        .map_err(|_| stopped())?;
        self.in_flight = Some((progress, wait));
        Ok(stored)
    }

    async fn finish(mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// One run's state.
struct Run<'a, F> {
    walk: Walk<SelectorVerifier>,
    record: Record,
    progress: FetchProgress,
    writer: &'a mut Writer,
    pending: Vec<(Cid, Bytes)>,
    pending_bytes: usize,
    on_progress: F,
}

impl<F: FnMut(&FetchProgress)> Run<'_, F> {
    /// Queues the verified blocks not yet stored for the writer, which stores them and
    /// then records the progress; reports the progress of the batch before (what a report
    /// says is on disk). `wait`: also wait for this batch to be stored.
    async fn flush(&mut self, wait: bool) -> Result<(), FetchError> {
        if !self.pending.is_empty() {
            self.record.steps = self.walk.steps();
            self.progress.steps = self.walk.steps();
            let blocks = std::mem::take(&mut self.pending);
            self.pending_bytes = 0;
            let stored = self
                .writer
                .write(blocks, self.record.clone(), self.progress.clone())
                .await?;
            if let Some(p) = stored {
                (self.on_progress)(&p);
            }
        }
        if wait && let Some(p) = self.writer.settle().await? {
            (self.on_progress)(&p);
        }
        Ok(())
    }
}

/// Pending verified bytes that trigger a write (a small batch: what a crash loses).
const BATCH_BYTES: usize = 1 << 20;

impl HttpFetcher {
    /// A fetcher storing into `store`, keeping progress records in `progress` (for a node:
    /// [`PROGRESS_KEYSPACE`] of its database; `None`: resume from the store alone).
    pub fn new(
        store: Arc<dyn Blockstore>,
        progress: Option<Keyspace>,
        config: FetchConfig,
    ) -> Self {
        Self {
            store,
            progress,
            config,
        }
    }

    fn key(spec: &Spec) -> Vec<u8> {
        let mut key = b"fetch/".to_vec();
        key.extend(serde_json::to_vec(spec).unwrap_or_default());
        key
    }

    fn load(&self, key: &[u8]) -> Result<Record, FetchError> {
        let Some(ks) = &self.progress else {
            return Ok(Record::default());
        };
        Ok(ks
            .get(key)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    /// Forgets the progress record of `spec` (its blocks stay in the store).
    pub fn forget(&self, spec: &Spec) -> Result<(), FetchError> {
        if let Some(ks) = &self.progress {
            ks.delete(&Self::key(spec))?;
        }
        Ok(())
    }

    /// Rebuilds the walk of `spec` from what the store holds: the saved steps, then every
    /// next block already stored. Blocking (reads the store).
    fn replay(&self, spec: &Spec, saved: u64) -> Result<Walk<SelectorVerifier>, FetchError> {
        let mut walk = Walk::new(spec).map_err(FetchError::Walk)?;
        let mut replayed = 0;
        while replayed < saved && !walk.is_done() {
            if walk.skip(self.store.as_ref()).is_err() {
                // The store lost something (a crash of the machine): start over, keeping
                // what is there through the has-check below.
                walk = Walk::new(spec).map_err(FetchError::Walk)?;
                break;
            }
            replayed += 1;
        }
        while let Some(cid) = walk.expected() {
            if !self.store.has(&cid)? || walk.skip(self.store.as_ref()).is_err() {
                break;
            }
        }
        Ok(walk)
    }

    /// Fetches `spec` from `providers` (tried in order, each failure passing the fetch on
    /// to the next), calling `on_progress` as it goes. Returns when every block of the
    /// request is verified and stored.
    pub async fn fetch<F: FnMut(&FetchProgress) + Send>(
        &self,
        spec: &Spec,
        providers: &[Provider],
        on_progress: F,
    ) -> Result<FetchReport, FetchError> {
        let key = Self::key(spec);
        let record = self.load(&key)?;
        let this = self.clone();
        let spec_owned = spec.clone();
        let saved = record.steps;
        let walk = tokio::task::spawn_blocking(move || this.replay(&spec_owned, saved))
            .await
            .map_err(|e| FetchError::Connect(e.to_string()))??;
        let resumed_from = walk.steps();
        let mut writer = Writer::start(Arc::clone(&self.store), self.progress.clone(), key);
        let mut run = Run {
            walk,
            record,
            progress: FetchProgress {
                steps: resumed_from,
                ..FetchProgress::default()
            },
            writer: &mut writer,
            pending: Vec::new(),
            pending_bytes: 0,
            on_progress,
        };
        let mut failures = Vec::new();
        let result = self.drive(&mut run, providers, &mut failures).await;
        let flushed = run.flush(true).await;
        let terminal = run.walk.terminal();
        let steps = run.walk.steps();
        let progress = run.progress.clone();
        let record = run.record.clone();
        drop(run);
        writer.finish().await;
        result?;
        flushed?;
        // Record the final count even when nothing new had to be written.
        if let Some(ks) = &self.progress {
            let mut done = record.clone();
            done.steps = steps;
            ks.put(
                &Self::key(spec),
                &serde_json::to_vec(&done).unwrap_or_default(),
            )?;
        }
        Ok(FetchReport {
            terminal,
            steps,
            resumed_from,
            wire_bytes_all_runs: record.wire_bytes,
            progress,
            failures,
        })
    }

    async fn drive<F: FnMut(&FetchProgress)>(
        &self,
        run: &mut Run<'_, F>,
        providers: &[Provider],
        failures: &mut Vec<String>,
    ) -> Result<(), FetchError> {
        if run.walk.is_done() {
            return Ok(());
        }
        if providers.is_empty() {
            return Err(FetchError::NoProvider);
        }
        let mut failed_in_a_row = 0usize;
        let mut i = 0usize;
        loop {
            let provider = &providers[i % providers.len()];
            run.progress.provider = provider.to_string();
            let before = run.walk.steps();
            match self.with_provider(run, provider).await {
                Ok(()) => return Ok(()),
                Err(e) if !e.is_provider_fault() => return Err(e),
                Err(e) => {
                    run.flush(true).await?;
                    tracing::info!(%provider, error = %e, "provider failed; trying the next");
                    failures.push(format!("{provider}: {e}"));
                    failed_in_a_row = if run.walk.steps() > before {
                        1
                    } else {
                        failed_in_a_row + 1
                    };
                    if failed_in_a_row >= providers.len() * self.config.rounds.max(1) {
                        return Err(FetchError::AllFailed(Box::new(e)));
                    }
                    i += 1;
                }
            }
        }
    }

    /// Asks `provider` for everything still missing, one request per pending task.
    async fn with_provider<F: FnMut(&FetchProgress)>(
        &self,
        run: &mut Run<'_, F>,
        provider: &Provider,
    ) -> Result<(), FetchError> {
        let mut conn: Option<Connection> = None;
        loop {
            let Some(ask) = run.walk.next_ask().map_err(FetchError::Walk)? else {
                return Ok(());
            };
            if conn.is_none() {
                conn = Some(provider.connect(self.config.connect_timeout).await?);
            }
            let Some(c) = conn.as_mut() else {
                continue;
            };
            run.progress.requests += 1;
            let path = provider.car_path(&ask.spec);
            let response = c.get_car(&path, self.config.idle_timeout).await?;
            let status = response.status();
            if status != StatusCode::OK {
                let body =
                    tokio::time::timeout(self.config.idle_timeout, response.into_body().collect())
                        .await
                        .ok()
                        .and_then(|r| r.ok())
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                let message = String::from_utf8_lossy(&body[..body.len().min(200)])
                    .trim()
                    .to_owned();
                return Err(FetchError::Status { status, message });
            }
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if !is_ordered_car(&content_type) {
                return Err(FetchError::NotACar(content_type));
            }
            let mut body = response.into_body();
            let mut decoder = Decoder::new(self.config.limits);
            let mut answered = false;
            loop {
                let frame = tokio::time::timeout(self.config.idle_timeout, body.frame())
                    .await
                    .map_err(|_| FetchError::Timeout("waiting for the body"))?;
                let Some(frame) = frame else { break };
                let frame = frame.map_err(|e| FetchError::Connect(e.to_string()))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                run.progress.wire_bytes += data.len() as u64;
                run.record.wire_bytes += data.len() as u64;
                decoder.push(data);
                while let Some(event) = decoder.next_event()? {
                    let Event::Section { cid, data } = event else {
                        continue;
                    };
                    if answered {
                        return Err(FetchError::Extra);
                    }
                    if self.take(run, cid, data)? {
                        run.flush(false).await?;
                    }
                    answered = run.walk.answers(&ask);
                }
            }
            decoder.finish()?;
            if !run.walk.answers(&ask) {
                return Err(FetchError::Incomplete);
            }
            run.flush(false).await?;
        }
    }

    /// Verifies one section against the walk and queues it for the store; true when the
    /// queue should be written now.
    fn take<F: FnMut(&FetchProgress)>(
        &self,
        run: &mut Run<'_, F>,
        cid: Cid,
        data: Vec<u8>,
    ) -> Result<bool, FetchError> {
        let Some(expected) = run.walk.expected() else {
            return Err(FetchError::Extra);
        };
        let block = Block::new(&cid, data);
        // The verifier recomputes the CID from the block's bytes: once accepted, the block
        // is `expected`'s, whatever digest the section claimed.
        run.walk.accept(&block).map_err(FetchError::Refused)?;
        let verified = expected;
        let len = block.data.len();
        run.progress.blocks += 1;
        run.progress.block_bytes += len as u64;
        run.record.block_bytes += len as u64;
        run.pending.push((verified, block.data));
        run.pending_bytes += len;
        Ok(run.pending_bytes >= BATCH_BYTES)
    }
}

/// Whether a `Content-Type` is a CAR v1 in DFS order with duplicates (what the walk
/// verifies against).
fn is_ordered_car(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    if parts.next() != Some(crate::request::CAR_TYPE) {
        return false;
    }
    let params: Vec<(String, String)> = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_owned(),
            )
        })
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    get("version").is_none_or(|v| v == "1")
        && get("order") == Some("dfs")
        && get("dups") == Some("y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ordered_cars_with_duplicates_are_verified() {
        assert!(is_ordered_car(
            "application/vnd.ipld.car; version=1; order=dfs; dups=y"
        ));
        assert!(is_ordered_car("application/vnd.ipld.car;order=dfs;dups=y"));
        assert!(!is_ordered_car(
            "application/vnd.ipld.car; version=1; order=dfs; dups=n"
        ));
        assert!(!is_ordered_car("application/vnd.ipld.car; version=1"));
        assert!(!is_ordered_car(
            "application/vnd.ipld.car; version=2; order=dfs; dups=y"
        ));
        assert!(!is_ordered_car("text/plain"));
    }
}
