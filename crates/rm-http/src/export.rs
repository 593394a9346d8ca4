//! Writing a fetched UnixFS file's bytes out of the store: all of it, or the byte range an
//! `entity-bytes` fetch brought (reading only the blocks that range needs).

use std::io::Write;

use cid::Cid;
use rm_blockio::Blockstore;
use rm_blockio::codec::{DAG_PB, RAW};
use rm_blockio::unixfs::{DataType, UnixFsData};

use crate::Error;
use crate::walk::WalkError;

/// Most nodes waiting on the export stack.
const MAX_STACK: usize = 1 << 20;

/// Writes bytes `first..=last` of the UnixFS file at `root` to `out`; returns the count.
pub fn export_range<W: Write>(
    store: &dyn Blockstore,
    root: &Cid,
    (first, last): (u64, u64),
    out: &mut W,
) -> Result<u64, Error> {
    // (cid, offset of its first byte in the file)
    let mut stack = vec![(*root, 0u64)];
    let mut written = 0u64;
    let missing = |c: &Cid| Error::Walk(WalkError::Missing(Box::new(*c)));
    while let Some((cid, start)) = stack.pop() {
        let data = store.get(&cid)?.ok_or_else(|| missing(&cid))?;
        rm_blockio::codec::verify(&cid, &data)
            .map_err(|e| Error::Walk(WalkError::InvalidUnixFs(e.to_string())))?;
        let (inline, children): (&[u8], Vec<(Cid, u64)>) = match cid.codec() {
            RAW => (&data[..], Vec::new()),
            DAG_PB => {
                let node = rm_blockio::codec::decode_dag_pb(&data)
                    .map_err(|e| Error::Walk(WalkError::InvalidUnixFs(e.to_string())))?;
                let fs = node
                    .data
                    .as_deref()
                    .and_then(|d| UnixFsData::decode(d).ok())
                    .ok_or_else(|| {
                        Error::Walk(WalkError::InvalidUnixFs(format!("{cid}: not UnixFS")))
                    })?;
                if !matches!(fs.kind, DataType::File | DataType::Raw) {
                    return Err(Error::Walk(WalkError::InvalidUnixFs(format!(
                        "{cid}: a {:?} node is not a file",
                        fs.kind
                    ))));
                }
                let inline_len = fs.data.as_ref().map_or(0, Vec::len) as u64;
                let mut offset = start + inline_len;
                let mut children = Vec::new();
                for (link, size) in node.links.iter().zip(&fs.blocksizes) {
                    if offset <= last && offset + size > first {
                        children.push((link.cid, offset));
                    }
                    offset += size;
                }
                // The inline bytes are written below from their own buffer.
                let inline = fs.data.unwrap_or_default();
                write_part(out, &inline, start, first, last, &mut written)?;
                (&[][..], children)
            }
            other => {
                return Err(Error::Walk(WalkError::Unsupported(format!(
                    "codec {other:#x} in a file"
                ))));
            }
        };
        write_part(out, inline, start, first, last, &mut written)?;
        if stack.len() + children.len() > MAX_STACK {
            return Err(Error::Walk(WalkError::TooLarge));
        }
        stack.extend(children.into_iter().rev());
    }
    out.flush()?;
    Ok(written)
}

/// Writes the part of `bytes` (at file offset `start`) inside `first..=last`.
fn write_part<W: Write>(
    out: &mut W,
    bytes: &[u8],
    start: u64,
    first: u64,
    last: u64,
    written: &mut u64,
) -> Result<(), Error> {
    let end = start + bytes.len() as u64; // exclusive
    if bytes.is_empty() || end <= first || start > last {
        return Ok(());
    }
    let from = first.saturating_sub(start) as usize;
    let to = ((last + 1).min(end) - start) as usize;
    out.write_all(&bytes[from..to])?;
    *written += (to - from) as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rm_blockio::MemoryBlockstore;
    use rm_blockio::unixfs::{Importer, Preset};

    #[test]
    fn ranges_of_a_file() {
        let store = MemoryBlockstore::new();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for preset in [
            Preset::GO_FIL_MARKETS
                .with_chunk_size(300)
                .with_max_links(3),
            Preset::KUBO_V0.with_chunk_size(256).with_max_links(4),
        ] {
            let root = Importer::import_bytes(&store, preset, &data).unwrap().root;
            for (a, b) in [(0, 4999), (0, 0), (299, 300), (1234, 3456), (4999, 4999)] {
                let mut out = Vec::new();
                let n = export_range(&store, &root, (a, b), &mut out).unwrap();
                assert_eq!(n as usize, out.len());
                assert_eq!(out, &data[a as usize..=b as usize], "{a}..={b}");
            }
        }
    }
}
