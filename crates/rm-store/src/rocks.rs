//! The RocksDB backend.

use std::path::{Path, PathBuf};

use rocksdb::{DB, Direction, IteratorMode, WriteOptions};

use crate::{Backend, BoxIter, Durability, Error, Options, WriteBatch};

pub(crate) struct Rocks {
    db: DB,
    path: PathBuf,
}

fn backend(e: rocksdb::Error) -> Error {
    Error::Backend(e.into_string())
}

impl Rocks {
    pub(crate) fn open(path: &Path, keyspaces: &[&str], options: &Options) -> Result<Self, Error> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(options.min_blob_size);
        opts.set_enable_pipelined_write(true);
        opts.set_db_write_buffer_size(options.memtable_budget);
        opts.set_write_buffer_size((options.memtable_budget / 2).max(1 << 20));
        // A missing database has no column families yet; any other failure shows up in
        // `open_cf`.
        let mut names = DB::list_cf(&opts, path).unwrap_or_default();
        for name in keyspaces {
            if !names.iter().any(|n| n == name) {
                names.push((*name).to_owned());
            }
        }
        let db = DB::open_cf(&opts, path, names).map_err(|e| {
            let text = e.into_string();
            // RocksDB says "IO error: lock hold by current process" or "While lock file:
            // .../LOCK: Resource temporarily unavailable".
            if text.contains("lock hold") || text.contains("lock file") || text.contains("LOCK") {
                Error::Locked(path.to_path_buf())
            } else {
                Error::Backend(text)
            }
        })?;
        Ok(Rocks {
            db,
            path: path.to_path_buf(),
        })
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, Error> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::MissingKeyspace(name.to_owned()))
    }
}

impl Backend for Rocks {
    fn has_keyspace(&self, name: &str) -> bool {
        self.db.cf_handle(name).is_some()
    }

    fn keyspaces(&self) -> Vec<String> {
        let mut names = DB::list_cf(&rocksdb::Options::default(), &self.path).unwrap_or_default();
        names.sort();
        names
    }

    fn read(&self, ks: &str, key: &[u8], read: &mut dyn FnMut(&[u8])) -> Result<bool, Error> {
        match self.db.get_pinned_cf(self.cf(ks)?, key).map_err(backend)? {
            Some(value) => {
                read(&value);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn may_contain(&self, ks: &str, key: &[u8]) -> Result<bool, Error> {
        Ok(self.db.key_may_exist_cf(self.cf(ks)?, key))
    }

    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<(), Error> {
        let mut wb = rocksdb::WriteBatch::default();
        for (ks, key, value) in batch.ops() {
            let cf = self.cf(ks)?;
            match value {
                Some(value) => wb.put_cf(cf, key, value),
                None => wb.delete_cf(cf, key),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(durability.sync());
        self.db.write_opt(wb, &opts).map_err(backend)
    }

    fn iter<'a>(&'a self, ks: &str, from: &[u8]) -> Result<BoxIter<'a>, Error> {
        let iter = self
            .db
            .iterator_cf(self.cf(ks)?, IteratorMode::From(from, Direction::Forward));
        Ok(Box::new(iter.map(|item| item.map_err(backend))))
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}
