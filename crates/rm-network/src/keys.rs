//! The host's persistent identity: an ed25519 keypair in a file (libp2p protobuf
//! encoding, permissions 0600), and peer-id conversions.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("peer.key");
//! let key = rm_network::keys::load_or_generate(&path)?;
//! let again = rm_network::keys::load(&path)?;
//! assert_eq!(key.public().to_peer_id(), again.public().to_peer_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use libp2p::{
    PeerId,
    identity::{KeyType, Keypair},
};

use crate::Error;

/// Largest key file accepted (an ed25519 key is 68 bytes of protobuf).
const MAX_KEY_FILE: u64 = 4096;

fn key_error(path: &Path, reason: impl ToString) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// A fresh ed25519 keypair.
pub fn generate() -> Keypair {
    Keypair::generate_ed25519()
}

/// Writes `keypair` to `path` (libp2p protobuf encoding) with permissions 0600, replacing
/// the file atomically (a sibling temporary file, then a rename).
pub fn save(path: &Path, keypair: &Keypair) -> Result<(), Error> {
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| key_error(path, e))?;
    let tmp = temporary_path(path);
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(key_error(path, e));
    }
    Ok(())
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    let mut tmp = path.to_path_buf();
    tmp.set_file_name(name);
    tmp
}

/// Reads an ed25519 keypair written by [`save`]. Files over 4 KiB, other key types and
/// undecodable bytes are errors; a file readable by others is loaded with a warning.
pub fn load(path: &Path) -> Result<Keypair, Error> {
    let meta = fs::metadata(path).map_err(|e| key_error(path, e))?;
    if meta.len() > MAX_KEY_FILE {
        return Err(key_error(
            path,
            format!("{} bytes is too large for a key file", meta.len()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "key file is readable by others");
        }
    }
    let bytes = fs::read(path).map_err(|e| key_error(path, e))?;
    let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| key_error(path, e))?;
    if keypair.key_type() != KeyType::Ed25519 {
        return Err(key_error(
            path,
            format!("{:?} key, expected Ed25519", keypair.key_type()),
        ));
    }
    Ok(keypair)
}

/// Loads the keypair at `path`, or generates and saves one when the file does not exist.
pub fn load_or_generate(path: &Path) -> Result<Keypair, Error> {
    match fs::metadata(path) {
        Ok(_) => load(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = generate();
            save(path, &keypair)?;
            Ok(keypair)
        }
        Err(e) => Err(key_error(path, e)),
    }
}

/// The raw-bytes peer id rm-types uses for a libp2p [`PeerId`].
pub fn to_rm_peer(peer: &PeerId) -> rm_types::PeerId {
    rm_types::PeerId(peer.to_bytes())
}

/// The libp2p [`PeerId`] of rm-types' raw bytes.
pub fn from_rm_peer(peer: &rm_types::PeerId) -> Result<PeerId, Error> {
    PeerId::from_bytes(peer.as_bytes()).map_err(|_| Error::InvalidPeerId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = generate();
        save(&path, &key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.public().to_peer_id(), key.public().to_peer_id());
        // Saving again replaces the file.
        let other = generate();
        save(&path, &other).unwrap();
        assert_eq!(
            load(&path).unwrap().public().to_peer_id(),
            other.public().to_peer_id()
        );
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn load_or_generate_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let a = load_or_generate(&path).unwrap();
        let b = load_or_generate(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage");
        fs::write(&garbage, b"not a key").unwrap();
        assert!(matches!(load(&garbage), Err(Error::Key { .. })));
        let big = dir.path().join("big");
        fs::write(&big, vec![0u8; 5000]).unwrap();
        assert!(matches!(load(&big), Err(Error::Key { .. })));
        assert!(matches!(
            load(&dir.path().join("missing")),
            Err(Error::Key { .. })
        ));
    }

    #[test]
    fn peer_id_conversion_round_trips() {
        let peer = generate().public().to_peer_id();
        let raw = to_rm_peer(&peer);
        assert_eq!(raw.as_bytes(), peer.to_bytes().as_slice());
        assert_eq!(from_rm_peer(&raw).unwrap(), peer);
        assert!(matches!(
            from_rm_peer(&rm_types::PeerId(vec![1, 2, 3])),
            Err(Error::InvalidPeerId)
        ));
    }
}
