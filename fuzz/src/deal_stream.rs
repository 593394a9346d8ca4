//! The deal stream: go-cbor-util framing (items back to back, scanned under the cap of the
//! message expected) with `DealProposal` (the provider reading), `DealResponse` (the
//! client reading) and `ClientMessage` (the provider reading payments and cancels).
//!
//! Input: one mode byte (which message, how many bytes arrive per read), then the stream.

use rm_types::{ClientMessage, DealProposal, DealResponse, codec};

use crate::{caps, frames, stable};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(mode >> 2) * 7;
    match mode % 3 {
        0 => frames(stream, caps::PROPOSAL, chunk, 8, |item| {
            if let Some(p) = stable(item, codec::from_slice::<DealProposal>, codec::to_vec) {
                // The selector a provider would run is parsed under its caps.
                if let Some(sel) = &p.params.selector
                    && let Ok(bytes) = codec::to_vec(sel)
                {
                    let _ = rm_blockio::Selector::from_dag_cbor(&bytes);
                }
            }
        }),
        1 => frames(stream, caps::MESSAGE, chunk, 8, |item| {
            if let Some(r) = stable(item, codec::from_slice::<DealResponse>, codec::to_vec) {
                for block in &r.blocks {
                    // What the client does first with each block.
                    let _ = block.cid();
                }
            }
        }),
        _ => frames(stream, caps::CONTROL, chunk, 8, |item| {
            if let Some(ClientMessage::Payment(p)) =
                stable(item, codec::from_slice::<ClientMessage>, codec::to_vec)
                && let Some(v) = &p.payment_voucher
            {
                let _ = rm_paych::voucher::check_shape(v, &p.payment_channel);
            }
        }),
    }
}
