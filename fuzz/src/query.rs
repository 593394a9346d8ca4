//! Both query protocols: `/fil/retrieval/qry/1.0.0` (map encoding) and
//! `/fil/retrieval/qry/0.0.1` (tuple encoding), a `Query` as the provider reads it and a
//! `QueryResponse` as the client reads it, each framed under its cap.
//!
//! Input: one mode byte (version, side, bytes per read), then the stream.

use rm_types::{Query, QueryResponse, codec, tuple};

use crate::{caps, frames, stable};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(mode >> 2) * 5;
    match mode % 4 {
        0 => frames(stream, caps::QUERY, chunk, 4, |item| {
            stable(item, codec::from_slice::<Query>, codec::to_vec);
        }),
        1 => frames(stream, caps::CONTROL, chunk, 4, |item| {
            if let Some(r) = stable(item, codec::from_slice::<QueryResponse>, codec::to_vec) {
                let _ = r.piece_retrieval_price();
            }
        }),
        2 => frames(stream, caps::QUERY, chunk, 4, |item| {
            stable(item, tuple::from_slice::<Query>, tuple::to_vec);
        }),
        _ => frames(stream, caps::CONTROL, chunk, 4, |item| {
            if let Some(r) = stable(item, tuple::from_slice::<QueryResponse>, tuple::to_vec) {
                let _ = r.piece_retrieval_price();
            }
        }),
    }
}
