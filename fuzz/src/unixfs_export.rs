//! UnixFS export of a DAG read from a CAR: every block the CAR holds is verified and
//! stored, then each root is exported as a file (with its output capped) and, when the
//! store holds a whole explore-all traversal of it, as a CAR again.

use std::io::{self, Write};

use rm_blockio::blockstore::MemoryBlockstore;
use rm_blockio::{Selector, car, unixfs};

/// Most bytes an export may write before the harness stops it.
const MAX_OUTPUT: u64 = 4 << 20;

/// A sink that fails once more than [`MAX_OUTPUT`] bytes were written.
struct Capped(u64);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        if self.0 > MAX_OUTPUT {
            return Err(io::Error::other("output cap"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let store = MemoryBlockstore::new();
    let Ok(roots) = car::import(data, &store) else {
        return;
    };
    for root in roots.iter().take(4) {
        let _ = unixfs::export_file(&store, root, &mut Capped(0));
        let mut out = Capped(0);
        let _ = car::export(
            &store,
            *root,
            &Selector::explore_all_recursively(),
            &mut out,
        );
    }
}
