//! The CAR v1 reader: header, sections, every block verified against its CID, under the
//! default caps; `inspect` on the same bytes agrees with reading them block by block.

use rm_blockio::car::{self, Reader};

/// Most blocks read from one input.
const MAX_BLOCKS: usize = 4096;

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let summary = car::inspect(data);
    let Ok(mut reader) = Reader::new(data) else {
        assert!(
            summary.is_err(),
            "inspect accepted a header the reader refused"
        );
        return;
    };
    let mut blocks = 0u64;
    let mut ok = true;
    for _ in 0..MAX_BLOCKS {
        match reader.next_block() {
            Ok(Some((cid, bytes))) => {
                rm_blockio::codec::verify(&cid, &bytes).expect("the reader verified it");
                blocks += 1;
            }
            Ok(None) => break,
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    if ok && blocks < MAX_BLOCKS as u64 {
        let summary = summary.expect("the reader read it all, so inspect does");
        assert_eq!(summary.sections.len() as u64, blocks);
    }
}
