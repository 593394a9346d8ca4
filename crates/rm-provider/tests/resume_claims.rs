//! How much a resuming client may claim beyond the provider's record of what it sent.
//!
//! Progress is written with payments and every `progress_write_bytes`, so a provider that
//! restarted may have sent more than its record says. Its core then accepts a claim of up
//! to that much more (`progress_write_bytes` plus one response); once a resume has set the
//! totals, or in a core that never restarted, it knows exactly what it sent and accepts
//! nothing beyond it (`tests/hostile.rs` in rm-e2e checks that over the network).

use std::time::Instant;

use rm_fsm::Snapshot;
use rm_provider::{DealConfig, ProviderAction, ProviderDeal, ProviderState, ProviderStatus};
use rm_types::{Ask, Cid, DealId, DealProposal, DealStatus, Params, PeerId, Resume, TokenAmount};

const ID: DealId = DealId(7);

fn ask() -> Ask {
    Ask {
        price_per_byte: TokenAmount::zero(),
        unseal_price: TokenAmount::zero(),
        payment_interval: u64::MAX,
        payment_interval_increase: u64::MAX,
    }
}

fn proposal(resume: Option<Resume>) -> DealProposal {
    let root: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        .parse()
        .unwrap();
    let mut p = DealProposal::new(
        root,
        ID,
        Params::new(TokenAmount::zero(), u64::MAX, u64::MAX),
    );
    p.resume = resume;
    p
}

/// A free deal whose record says 10 blocks / 10 MiB were sent.
fn record() -> Snapshot<ProviderState> {
    let mut state = ProviderState::new(proposal(None), PeerId(vec![9]));
    state.status = ProviderStatus::Ongoing;
    state.blocks_sent = 10;
    state.bytes_sent = 10 << 20;
    Snapshot { seq: 5, state }
}

fn config() -> DealConfig {
    let mut c = DealConfig::default();
    c.progress_write_bytes = 16 << 20;
    c.max_response_bytes = 4 << 20;
    c
}

fn claim(blocks: u64, bytes: u64) -> DealProposal {
    proposal(Some(Resume { blocks, bytes }))
}

/// Whether the core took the claim: it then counts the claimed blocks' bytes in the DAG.
fn takes(deal: &mut ProviderDeal, now: Instant, claim: &DealProposal) -> Result<(), String> {
    deal.handle_resume(now, claim).map_err(|r| {
        assert_eq!(r.status, DealStatus::Errored);
        r.message
    })?;
    let mut counting = false;
    while let Some(action) = deal.poll_action() {
        counting |= matches!(action, ProviderAction::CountBytes { blocks } if blocks == claim.resume.unwrap().blocks);
    }
    assert!(counting, "a taken claim is counted against the DAG");
    Ok(())
}

#[test]
fn a_restarted_provider_takes_claims_up_to_what_may_have_gone_out_unwritten() {
    let now = Instant::now();
    // Record 10 MiB; up to 16 MiB + one 4 MiB response may have gone out unwritten.
    let mut deal = ProviderDeal::restore(ID, record(), ask(), now, config());
    let err = takes(&mut deal, now, &claim(31, (30 << 20) + 1)).unwrap_err();
    assert!(err.contains("claims 31 blocks, 10 were sent"), "{err}");
    assert_eq!(deal.state().status, ProviderStatus::Ongoing);
    takes(&mut deal, now, &claim(30, 30 << 20)).unwrap();
}

#[test]
fn once_a_resume_has_set_the_totals_nothing_beyond_them_is_taken() {
    let now = Instant::now();
    let mut deal = ProviderDeal::restore(ID, record(), ask(), now, config());
    takes(&mut deal, now, &claim(12, 12 << 20)).unwrap();
    deal.handle_counted(now, Ok(12 << 20));
    assert_eq!(deal.state().blocks_sent, 12);
    assert_eq!(deal.state().resumes, 1);
    // This core has counted everything it sent since: the record is exact again.
    let err = takes(&mut deal, now, &claim(13, 13 << 20)).unwrap_err();
    assert!(err.contains("claims 13 blocks, 12 were sent"), "{err}");
}
