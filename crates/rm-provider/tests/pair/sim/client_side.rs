//! The client's driver in the pair: carries out a [`ClientDeal`]'s actions.

use super::*;

impl Sim {
    pub(super) fn run_client(&mut self) -> bool {
        let mut did = false;
        loop {
            let Some(client) = self.client.as_mut() else {
                return did;
            };
            let Some(action) = client.poll_action() else {
                return did;
            };
            did = true;
            let now = self.now;
            if std::env::var_os("PAIR_TRACE").is_some() {
                let t = now.duration_since(self.base).as_millis();
                match &action {
                    ClientAction::Persist { event, snapshot } => {
                        eprintln!("{t} C persist {event:?} -> {}", snapshot.state.status)
                    }
                    ClientAction::Verify(b) => eprintln!("{t} C verify {} blocks", b.len()),
                    other => eprintln!("{t} C {:.120}", format!("{other:?}")),
                }
            }
            match action {
                ClientAction::Publish { .. } => {}
                ClientAction::Persist { snapshot, .. } => {
                    assert!(snapshot.seq > self.client_disk.seq, "client seq goes up");
                    self.writes[0] += 1;
                    self.client_disk = *snapshot;
                }
                ClientAction::Connect => {
                    if self.provider_down_until.is_some() {
                        self.client_mut()
                            .handle_stream_lost(now, "connection refused");
                    } else {
                        let id = self.next_stream;
                        self.next_stream += 1;
                        self.streams.push(Stream {
                            id,
                            to_provider: Pipe::new(),
                            to_client: Pipe::new(),
                            client_open: true,
                            provider_open: true,
                        });
                        self.client_stream = Some(id);
                        if !self.client_mut().handle_connected(now) {
                            self.client_stream = None;
                        }
                    }
                }
                ClientAction::Send(Outbound::Proposal(p)) => {
                    self.send_to_provider(ToProvider::Open(p))
                }
                ClientAction::Send(Outbound::Payment(p)) => {
                    self.send_payment(p);
                }
                ClientAction::Send(Outbound::Cancel(c)) => {
                    self.send_to_provider(ToProvider::Message(ClientMessage::Cancel(c)));
                }
                ClientAction::Close | ClientAction::Reset => {
                    self.send_to_provider(ToProvider::End);
                    if let Some(id) = self.client_stream.take()
                        && let Some(s) = self.stream(id)
                    {
                        s.client_open = false;
                    }
                }
                ClientAction::Verify(blocks) => {
                    let result = self.verify(blocks);
                    let max = self.faults.max_verify;
                    if max.is_zero() {
                        self.client_mut().handle_verified(now, result);
                    } else {
                        let delay = self.rng.below(max.as_millis() as u64 + 1);
                        let at = self.now + Duration::from_millis(delay);
                        let at = self.client_work.back().map_or(at, |(t, _)| at.max(*t));
                        self.client_work.push_back((at, result));
                    }
                }
                ClientAction::SetupChannel {
                    client,
                    miner,
                    funds,
                } => {
                    let head = ready(RetrievalClientNode::chain_head(&self.client_node)).unwrap();
                    let r = ready(
                        self.client_node
                            .get_or_create_payment_channel(&client, &miner, &funds, &head),
                    );
                    self.client_mut().handle_channel_setup(now, r);
                }
                ClientAction::WaitChannel(wait) => {
                    let r = ready(self.client_node.wait_for_payment_channel_ready(&wait));
                    self.client_mut().handle_channel_ready(now, r);
                }
                ClientAction::AllocateLane(channel) => {
                    let r = ready(self.client_node.allocate_lane(&channel));
                    self.client_mut().handle_lane(now, r);
                }
                ClientAction::CreateVoucher {
                    channel,
                    lane,
                    amount,
                } => {
                    let head = ready(RetrievalClientNode::chain_head(&self.client_node)).unwrap();
                    let r = ready(
                        self.client_node
                            .create_payment_voucher(&channel, &amount, lane, &head),
                    );
                    self.client_mut().handle_voucher(now, r);
                }
                ClientAction::CheckFunds(channel) => {
                    let r = ready(self.client_node.check_available_funds(&channel));
                    self.client_mut().handle_available_funds(now, r);
                }
                ClientAction::Finished(outcome) => {
                    self.client_outcome = Some(outcome);
                }
            }
            // A crash can come between any two actions.
            if self.client_outcome.is_none() && self.rng.chance(self.faults.crash_client / 4) {
                self.crash_client();
            }
        }
    }

    pub(super) fn client_mut(&mut self) -> &mut ClientDeal {
        self.client.as_mut().expect("the client runs")
    }

    pub(super) fn send_payment(&mut self, payment: rm_types::DealPayment) {
        let mut payment = payment;
        if let Some(voucher) = &payment.payment_voucher {
            self.sent_vouchers
                .push((payment.payment_channel.clone(), voucher.clone()));
        }
        if self.rng.chance(self.faults.lying_client)
            && let Some(voucher) = payment.payment_voucher.clone()
        {
            self.injected.client_lies += 1;
            let channel = payment.payment_channel.clone();
            let sign = |lane: u64, nonce: u64, amount: TokenAmount| {
                rm_paych::voucher::create(
                    &self.client_wallet,
                    &self.client_addr,
                    channel.clone(),
                    lane,
                    nonce,
                    amount,
                )
                .unwrap()
            };
            let lie = match self.rng.below(5) {
                0 if voucher.amount.is_positive() => Some(sign(
                    voucher.lane,
                    voucher.nonce + 1,
                    &voucher.amount - &TokenAmount::from_atto(1u64),
                )),
                1 => self.sent_vouchers.first().map(|(_, v)| v.clone()),
                2 => Some(sign(voucher.lane + 1, 1, voucher.amount.clone())),
                3 => {
                    self.send_to_provider(ToProvider::Garbage);
                    return;
                }
                _ => {
                    // The same voucher twice.
                    self.send_to_provider(ToProvider::Message(ClientMessage::Payment(Box::new(
                        payment.clone(),
                    ))));
                    None
                }
            };
            if let Some(lie) = lie {
                payment.payment_voucher = Some(lie);
            }
        }
        self.send_to_provider(ToProvider::Message(ClientMessage::Payment(Box::new(
            payment,
        ))));
    }

    pub(super) fn verify(&mut self, blocks: Vec<Block>) -> Result<bool, VerifyError> {
        let from = self.client.as_ref().unwrap().state().blocks_received;
        let verifier = match self.verifier.take() {
            Some(v) if v.blocks_verified() == from => v,
            _ => SelectorVerifier::resume(self.root, &self.selector, from, &self.client_store)
                .map_err(|e| VerifyError::Storage(e.to_string()))?,
        };
        let mut verifier = verifier;
        let mut verified = Vec::new();
        for block in blocks {
            let v = verifier
                .verify(&block)
                .map_err(|e| VerifyError::Block(e.to_string()))?;
            verified.push((v.cid, block.data));
        }
        self.client_store
            .put_many(&verified)
            .map_err(|e| VerifyError::Storage(e.to_string()))?;
        let done = verifier.is_done();
        self.verifier = Some(verifier);
        Ok(done)
    }

    /// Answers the client verification that is due; true if one was.
    pub(super) fn finish_verify(&mut self) -> bool {
        if self.client.is_none() {
            return false;
        }
        match self.client_work.front() {
            Some((at, _)) if *at <= self.now => {
                let (_, result) = self.client_work.pop_front().unwrap();
                let now = self.now;
                self.client_mut().handle_verified(now, result);
                true
            }
            _ => false,
        }
    }

    pub(super) fn crash_client(&mut self) {
        self.trace("client crashes");
        self.injected.crash_client += 1;
        // A verification in flight dies with the process.
        self.client_work.clear();
        if let Some(id) = self.client_stream.take() {
            self.cut(id);
        }
        self.verifier = None;
        let deal = ClientDeal::restore(
            self.id,
            self.client_disk.clone(),
            self.now,
            self.client_config.clone(),
        );
        self.client = Some(deal);
        self.client_outcome = None;
    }
}
