//! The provider's driver in the pair: carries out a [`ProviderDeal`]'s actions, opens and resumes deals.

use super::*;

impl Sim {
    pub(super) fn run_provider(&mut self) -> bool {
        let mut did = false;
        loop {
            let Some(provider) = self.provider.as_mut() else {
                return did;
            };
            let Some(action) = provider.poll_action() else {
                return did;
            };
            did = true;
            let now = self.now;
            if std::env::var_os("PAIR_TRACE").is_some() {
                let t = now.duration_since(self.base).as_millis();
                match &action {
                    ProviderAction::Persist { event, snapshot } => {
                        eprintln!("{t} P persist {event:?} -> {}", snapshot.state.status)
                    }
                    ProviderAction::Send(r) => eprintln!(
                        "{t} P send {:?} {} blocks owed {}",
                        r.status,
                        r.blocks.len(),
                        r.payment_owed
                    ),
                    other => eprintln!("{t} P {:.120}", format!("{other:?}")),
                }
            }
            match action {
                ProviderAction::Publish { .. } => {}
                ProviderAction::Persist { snapshot, .. } => {
                    self.writes[1] += 1;
                    let seq = self.provider_disk.as_ref().map_or(0, |s| s.seq);
                    assert!(snapshot.seq > seq, "provider seq goes up");
                    self.provider_disk = Some(*snapshot);
                }
                ProviderAction::Locate => self.work(Work::Located(Ok(Located::Here))),
                ProviderAction::Decide => self.work(Work::Decided(Ok(()))),
                ProviderAction::Unseal if !self.unseal_time.is_zero() => {
                    let at = self.now + self.unseal_time;
                    let at = self.provider_work.back().map_or(at, |(t, _)| at.max(*t));
                    self.provider_work.push_back((at, Work::Unsealed(Ok(()))));
                }
                ProviderAction::Unseal => self.work(Work::Unsealed(Ok(()))),
                ProviderAction::ReadBlocks {
                    from,
                    max_blocks,
                    max_bytes,
                    stop_after,
                } => {
                    let r = self.read(from, max_blocks, max_bytes, stop_after);
                    self.work(Work::Read(r));
                }
                ProviderAction::CountBytes { blocks } => {
                    let mut reader =
                        BlockReader::new(&self.provider_store, self.root, &self.selector).unwrap();
                    let mut bytes = 0;
                    let mut result = Ok(0);
                    for _ in 0..blocks {
                        match reader.next_block() {
                            Ok(Some(b)) => bytes += b.data.len() as u64,
                            _ => {
                                result = Err("the DAG has fewer blocks".to_owned());
                                break;
                            }
                        }
                    }
                    let r = result.map(|_: u64| bytes);
                    self.work(Work::Counted(r));
                }
                ProviderAction::SaveVoucher {
                    channel,
                    voucher,
                    expected,
                } => {
                    let head =
                        ready(RetrievalProviderNode::chain_head(&self.provider_node)).unwrap();
                    let r = ready(
                        self.provider_node
                            .save_payment_voucher(&channel, &voucher, &expected, &head),
                    );
                    self.work(Work::Saved(r));
                }
                ProviderAction::Send(response) => {
                    if response.status == rm_types::DealStatus::FundsNeeded {
                        self.stops += 1;
                    }
                    self.send_response(response)
                }
                ProviderAction::Close | ProviderAction::Reset => {
                    self.send_to_client(ToClient::End);
                    if let Some(id) = self.provider_stream.take()
                        && let Some(s) = self.stream(id)
                    {
                        s.provider_open = false;
                    }
                }
                ProviderAction::Finished(outcome) => {
                    self.provider_outcome = Some(outcome);
                }
            }
            if self.provider_outcome.is_none() && self.rng.chance(self.faults.crash_provider / 4) {
                self.crash_provider();
            }
        }
    }

    /// A node call's answer: now, or later when the node is slow. (A voucher is saved in
    /// the ledger at once either way, as a real node would before it answers.)
    pub(super) fn work(&mut self, work: Work) {
        if self.rng.chance(self.faults.slow_node) {
            let delay = self.rng.below(self.faults.max_delay.as_millis() as u64 + 1);
            let at = self.now + Duration::from_millis(delay);
            // Answers keep their order.
            let at = self.provider_work.back().map_or(at, |(t, _)| at.max(*t));
            self.injected.slow_node += 1;
            self.provider_work.push_back((at, work));
        } else if self.provider_work.is_empty() {
            self.answer(work);
        } else {
            let at = self.provider_work.back().map_or(self.now, |(t, _)| *t);
            self.provider_work.push_back((at, work));
        }
    }

    /// Answers the node calls that are due; true if one was.
    pub(super) fn finish_work(&mut self) -> bool {
        if self.provider.is_none() {
            return false;
        }
        match self.provider_work.front() {
            Some((at, _)) if *at <= self.now => {
                let (_, work) = self.provider_work.pop_front().unwrap();
                self.answer(work);
                true
            }
            _ => false,
        }
    }

    fn answer(&mut self, work: Work) {
        let now = self.now;
        let Some(p) = self.provider.as_mut() else {
            return;
        };
        match work {
            Work::Located(r) => p.handle_located(now, r),
            Work::Decided(r) => p.handle_decision(now, r),
            Work::Unsealed(r) => p.handle_unsealed(now, r),
            Work::Read(r) => p.handle_read(now, r),
            Work::Counted(r) => p.handle_counted(now, r),
            Work::Saved(r) => p.handle_voucher_saved(now, r),
        }
    }

    pub(super) fn read(
        &mut self,
        from: u64,
        max_blocks: usize,
        max_bytes: usize,
        stop_after: Option<u64>,
    ) -> Result<ReadBlocks, String> {
        let mut reader = BlockReader::resume(&self.provider_store, self.root, &self.selector, from)
            .map_err(|e| e.to_string())?;
        let mut blocks = Vec::new();
        let mut bytes = 0u64;
        while blocks.len() < max_blocks && bytes < max_bytes as u64 {
            match reader.next_block().map_err(|e| e.to_string())? {
                Some(block) => {
                    bytes += block.data.len() as u64;
                    blocks.push(block);
                    if stop_after.is_some_and(|s| bytes >= s) {
                        break;
                    }
                }
                None => break,
            }
        }
        Ok(ReadBlocks {
            blocks,
            done: reader.is_done(),
        })
    }

    pub(super) fn send_response(&mut self, mut response: DealResponse) {
        if !response.blocks.is_empty() && self.rng.chance(self.faults.lying_provider) {
            self.injected.provider_lies += 1;
            let n = response.blocks.len();
            match self.rng.below(5) {
                0 => {
                    let i = self.rng.below(n as u64) as usize;
                    let block = &mut response.blocks[i];
                    let mut data = block.data.to_vec();
                    if data.is_empty() {
                        data.push(1);
                    } else {
                        data[0] ^= 0xff;
                    }
                    block.data = data.into();
                }
                1 => {
                    let extra = response.blocks[0].clone();
                    response.blocks.push(extra);
                }
                2 => {
                    response.blocks.remove(self.rng.below(n as u64) as usize);
                }
                3 => {
                    self.send_to_client(ToClient::Garbage);
                    return;
                }
                _ => {
                    // The same response twice.
                    self.send_to_client(ToClient::Response(response.clone()));
                }
            }
        }
        self.send_to_client(ToClient::Response(response));
    }

    pub(super) fn crash_provider(&mut self) {
        self.trace("provider crashes");
        self.injected.crash_provider += 1;
        if let Some(id) = self.provider_stream.take() {
            self.cut(id);
        }
        self.provider = None;
        // The node calls in flight die with the process.
        self.provider_work.clear();
        let down = self.rng.below(self.faults.max_down.as_millis() as u64 + 1);
        self.provider_down_until = Some(self.now + Duration::from_millis(down));
        self.provider_outcome = None;
    }

    pub(super) fn restart_provider(&mut self) {
        self.provider_down_until = None;
        if let Some(disk) = self.provider_disk.clone() {
            let deal =
                ProviderDeal::restore(self.id, disk, ask(), self.now, self.provider_config.clone());
            self.provider_outcome = deal.is_finished().then(|| deal.state().outcome()).flatten();
            self.provider = Some(deal);
        }
    }

    /// The provider's dispatcher: a new stream's proposal.
    pub(super) fn open(&mut self, stream: u64, proposal: DealProposal) {
        let now = self.now;
        let respond = |sim: &mut Sim, responses: Vec<DealResponse>| {
            let old = sim.provider_stream.replace(stream);
            for r in responses {
                sim.send_to_client(ToClient::Response(r));
            }
            sim.send_to_client(ToClient::End);
            sim.provider_stream = old;
        };
        match (&mut self.provider, &self.provider_disk) {
            (Some(deal), _) if !deal.is_finished() => match deal.handle_resume(now, &proposal) {
                Ok(()) => {
                    if let Some(old) = self.provider_stream.replace(stream) {
                        self.cut(old);
                    }
                }
                Err(r) => respond(self, vec![r]),
            },
            (_, Some(disk)) => {
                let state = disk.state.clone();
                match answer_finished(&state, &proposal) {
                    Finished::Refuse(r) => respond(self, vec![r]),
                    Finished::Tail { from, until } => {
                        let mut responses = vec![response(self.id, rm_types::DealStatus::Accepted)];
                        let read = self
                            .read(from, usize::MAX, usize::MAX, None)
                            .expect("the provider's DAG is whole");
                        let mut last = response(self.id, rm_types::DealStatus::Completed);
                        last.blocks = read
                            .blocks
                            .into_iter()
                            .take((until - from) as usize)
                            .collect();
                        responses.push(last);
                        respond(self, responses);
                    }
                }
            }
            (None, None) if proposal.resume.is_some_and(|r| r.blocks > 0) => {
                let mut r = response(self.id, rm_types::DealStatus::Errored);
                r.message = "unknown deal to resume".into();
                respond(self, vec![r]);
            }
            (_, None) => {
                let state = ProviderState::new(proposal, rm_types::PeerId(vec![9]));
                self.provider_disk = Some(Snapshot {
                    seq: 0,
                    state: state.clone(),
                });
                self.provider_stream = Some(stream);
                self.provider = Some(ProviderDeal::new(
                    self.id,
                    state,
                    ask(),
                    now,
                    self.provider_config.clone(),
                ));
            }
        }
    }
}
