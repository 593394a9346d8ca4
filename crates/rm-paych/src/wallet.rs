//! secp256k1 keys, Filecoin `f1` addresses and Filecoin signatures.
//!
//! Filecoin signs a message with secp256k1 as follows (go-crypto, fvm_shared): the digest is
//! blake2b-256 of the message bytes; the signature is the 65-byte recoverable form
//! `r ‖ s ‖ v` (`v` = recovery id, 0 or 1), carried as a [`Signature`] of type 1. A verifier
//! does not need the public key: it recovers it from the digest and the signature and
//! compares the `f1` address derived from it (blake2b-160 of the 65-byte uncompressed key)
//! with the expected signer. Like fvm_shared, [`recover`] first normalises a high `s` to
//! `n − s` (flipping the parity of `v`), so a malleated high-`s` signature recovers the same
//! key; [`Keypair::sign`] always produces low-`s` signatures (RFC 6979 deterministic nonces,
//! so signing the same bytes twice gives the same signature).
//!
//! A [`Wallet`] holds several keys by address and can persist them in a keystore file.
//!
//! ```
//! use rm_paych::wallet::{self, Wallet};
//!
//! let wallet = Wallet::in_memory();
//! let alice = wallet.new_key()?;
//! let sig = wallet.sign(&alice, b"hello")?;
//! assert_eq!(sig.bytes.len(), 65);
//! assert_eq!(wallet::recover(b"hello", &sig)?, alice);
//! assert!(wallet::verify(b"hullo", &sig, &alice).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The keystore file
//!
//! [`Wallet::open`] keeps the keys in `<dir>/`[`KEYSTORE_FILE`], a DAG-CBOR map
//! `{"version": 1, "default": <address bytes or null>, "keys": [<32-byte secret>, ...]}`.
//! Every change rewrites the whole file atomically: a temporary file in the same directory is
//! created with mode `0600` (owner read/write only, set when the file is created, so the
//! secrets are never readable by others, not even briefly), written, fsynced, and renamed over
//! the keystore; then the directory is fsynced. A missing directory is created with mode
//! `0700`.
//!
//! Loading **refuses** a keystore that group or others may read or write (any of the mode bits
//! `0o077`), with [`WalletError::InsecurePermissions`], as OpenSSH does with private keys:
//! a key that others could read must be treated as leaked, and fixing the mode silently would
//! hide that. Run `chmod 600` on the file to accept it again. The secrets are not encrypted at
//! rest (the node must sign vouchers unattended); keep the node home on a trusted disk.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, SigningKey, VerifyingKey};
use rm_types::address::Protocol;
use rm_types::crypto::SECP256K1_SIGNATURE_LEN;
use rm_types::{Address, Signature, SignatureType};
use serde::{Deserialize, Serialize};

/// File name of the keystore inside the directory given to [`Wallet::open`].
pub const KEYSTORE_FILE: &str = "keystore.cbor";

/// Length of a secp256k1 secret key.
pub const SECRET_KEY_LEN: usize = 32;

/// Length of an uncompressed secp256k1 public key (`0x04 ‖ x ‖ y`).
pub const PUBLIC_KEY_LEN: usize = 65;

/// Largest keystore file accepted (about 25,000 keys).
pub const MAX_KEYSTORE_LEN: u64 = 1 << 20;

/// Version number written in the keystore file.
const KEYSTORE_VERSION: u64 = 1;

/// Why a wallet operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// The wallet holds no key for this address.
    #[error("no key for address {0}")]
    KeyNotFound(Address),
    /// The wallet has no default address (it holds no key).
    #[error("the wallet has no default address")]
    NoDefaultAddress,
    /// Secret-key bytes were not a valid secp256k1 scalar (32 bytes, non-zero, below the order).
    #[error("invalid secp256k1 secret key")]
    InvalidSecretKey,
    /// The signing primitive failed (practically impossible with a valid key).
    #[error("signing failed")]
    Signing,
    /// The keystore could not be read or written.
    #[error("keystore {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The keystore file may be read or written by group or others; it is not loaded.
    #[error(
        "keystore {path} has mode {mode:03o}: group/others may access it; run `chmod 600` on it"
    )]
    InsecurePermissions {
        /// The keystore file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The keystore file is not a valid keystore.
    #[error("keystore {path} is corrupt: {reason}")]
    Corrupt {
        /// The keystore file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why a signature did not verify.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// Only secp256k1 signatures (type 1) are supported.
    #[error("unsupported signature type {0:?} (only secp256k1 is supported)")]
    UnsupportedType(SignatureType),
    /// A secp256k1 signature must be 65 bytes.
    #[error("secp256k1 signature is {0} bytes, expected 65")]
    WrongLength(usize),
    /// The recovery byte `v` is not 0-3.
    #[error("invalid recovery id {0}")]
    InvalidRecoveryId(u8),
    /// `r` or `s` is zero or not below the curve order.
    #[error("malformed secp256k1 signature")]
    Malformed,
    /// No public key can be recovered from this signature and message.
    #[error("public key recovery failed")]
    RecoveryFailed,
    /// Only `f1` (secp256k1) signers can be checked without a chain.
    #[error("signer {0} is not a secp256k1 (f1) address")]
    SignerNotSecp256k1(Address),
    /// The signature is valid but made by another key.
    #[error("signed by {recovered}, expected {expected}")]
    WrongSigner {
        /// The signer that was expected.
        expected: Address,
        /// The signer recovered from the signature.
        recovered: Address,
    },
}

/// blake2b-256 of `msg`: what Filecoin secp256k1 signatures sign.
pub fn digest(msg: &[u8]) -> [u8; 32] {
    let hash = blake2b_simd::Params::new().hash_length(32).hash(msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.as_bytes());
    out
}

/// A secp256k1 key pair and its `f1` address.
///
/// `Debug` prints the address only, never the secret.
#[derive(Clone)]
pub struct Keypair {
    secret: SigningKey,
    public: [u8; PUBLIC_KEY_LEN],
    address: Address,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Keypair {
    /// A fresh random key from the operating system's random number generator.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// The key with these 32 secret bytes.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, WalletError> {
        if bytes.len() != SECRET_KEY_LEN {
            return Err(WalletError::InvalidSecretKey);
        }
        SigningKey::from_slice(bytes)
            .map(Self::from_signing_key)
            .map_err(|_| WalletError::InvalidSecretKey)
    }

    fn from_signing_key(secret: SigningKey) -> Self {
        let public = uncompressed(secret.verifying_key());
        Self {
            address: Address::new_secp256k1(&public),
            secret,
            public,
        }
    }

    /// The `f1` address: blake2b-160 of the uncompressed public key.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The 65-byte uncompressed public key.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The 32 secret bytes. Handle with care.
    pub fn secret_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        self.secret.to_bytes().into()
    }

    /// Signs `msg` the Filecoin way: a type-1 signature `r ‖ s ‖ v` over blake2b-256(`msg`).
    pub fn sign(&self, msg: &[u8]) -> Result<Signature, WalletError> {
        let (sig, recid) = self
            .secret
            .sign_prehash_recoverable(&digest(msg))
            .map_err(|_| WalletError::Signing)?;
        let mut bytes = Vec::with_capacity(SECP256K1_SIGNATURE_LEN);
        bytes.extend_from_slice(&sig.to_bytes());
        bytes.push(recid.to_byte());
        Ok(Signature::new_secp256k1(bytes))
    }
}

fn uncompressed(key: &VerifyingKey) -> [u8; PUBLIC_KEY_LEN] {
    let point = key.to_encoded_point(false);
    let mut out = [0u8; PUBLIC_KEY_LEN];
    // An uncompressed SEC1 point of secp256k1 is always 65 bytes.
    out.copy_from_slice(point.as_bytes());
    out
}

/// Recovers the uncompressed public key that made `sig` over `msg`.
pub fn recover_public_key(
    msg: &[u8],
    sig: &Signature,
) -> Result<[u8; PUBLIC_KEY_LEN], SignatureError> {
    if sig.sig_type != SignatureType::Secp256k1 {
        return Err(SignatureError::UnsupportedType(sig.sig_type));
    }
    let raw: &[u8; SECP256K1_SIGNATURE_LEN] = sig
        .bytes
        .as_slice()
        .try_into()
        .map_err(|_| SignatureError::WrongLength(sig.bytes.len()))?;
    let v = raw[SECP256K1_SIGNATURE_LEN - 1];
    let mut recid = RecoveryId::from_byte(v).ok_or(SignatureError::InvalidRecoveryId(v))?;
    let mut ecdsa = EcdsaSignature::from_slice(&raw[..SECP256K1_SIGNATURE_LEN - 1])
        .map_err(|_| SignatureError::Malformed)?;
    // fvm_shared / go-crypto accept high-s signatures: normalise s and flip the y parity.
    if let Some(low) = ecdsa.normalize_s() {
        ecdsa = low;
        recid = RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced());
    }
    let key = VerifyingKey::recover_from_prehash(&digest(msg), &ecdsa, recid)
        .map_err(|_| SignatureError::RecoveryFailed)?;
    Ok(uncompressed(&key))
}

/// Recovers the `f1` address of the key that made `sig` over `msg`.
pub fn recover(msg: &[u8], sig: &Signature) -> Result<Address, SignatureError> {
    recover_public_key(msg, sig).map(|public| Address::new_secp256k1(&public))
}

/// Checks that `sig` over `msg` was made by the key of the `f1` address `signer`.
pub fn verify(msg: &[u8], sig: &Signature, signer: &Address) -> Result<(), SignatureError> {
    if signer.protocol() != Protocol::Secp256k1 {
        return Err(SignatureError::SignerNotSecp256k1(signer.clone()));
    }
    let recovered = recover(msg, sig)?;
    if recovered == *signer {
        Ok(())
    } else {
        Err(SignatureError::WrongSigner {
            expected: signer.clone(),
            recovered,
        })
    }
}

#[derive(Clone, Default)]
struct Keys {
    keys: BTreeMap<Address, Keypair>,
    default: Option<Address>,
}

/// The keystore file as stored (DAG-CBOR map).
#[derive(Serialize, Deserialize)]
struct KeystoreFile {
    version: u64,
    default: Option<Address>,
    keys: Vec<serde_bytes::ByteBuf>,
}

/// A set of secp256k1 keys by `f1` address, optionally persisted in a keystore file.
///
/// All methods take `&self`; share it as `Arc<Wallet>`. The first key added becomes the
/// default address.
pub struct Wallet {
    file: Option<PathBuf>,
    keys: RwLock<Keys>,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("file", &self.file)
            .field("addresses", &self.addresses())
            .finish()
    }
}

impl Wallet {
    /// A wallet that keeps its keys in memory only (tests, benchmarks, throw-away nodes).
    pub fn in_memory() -> Self {
        Self {
            file: None,
            keys: RwLock::new(Keys::default()),
        }
    }

    /// Opens the wallet stored in `dir` (the node home), creating the directory (mode
    /// `0700`) if needed. A missing keystore file means an empty wallet; the file is written
    /// on the first change. See the [module docs](self) for the file and its permissions.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, WalletError> {
        let dir = dir.as_ref();
        create_private_dir(dir).map_err(|source| WalletError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let file = dir.join(KEYSTORE_FILE);
        let keys = load_keystore(&file)?.unwrap_or_default();
        Ok(Self {
            file: Some(file),
            keys: RwLock::new(keys),
        })
    }

    /// The keystore file, or `None` for an in-memory wallet.
    pub fn keystore_path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn read(&self) -> RwLockReadGuard<'_, Keys> {
        // The lock guards plain data that is only replaced wholesale: a panic elsewhere
        // cannot leave it half-updated.
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to a copy of the keys, persists the copy, then installs it: a failed
    /// write leaves the wallet as it was.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Keys) -> Result<T, WalletError>,
    ) -> Result<T, WalletError> {
        let mut guard = self.write();
        let mut next = guard.clone();
        let out = change(&mut next)?;
        if let Some(file) = &self.file {
            store_keystore(file, &next)?;
        }
        *guard = next;
        Ok(out)
    }

    /// Generates a new key, stores it and returns its address.
    pub fn new_key(&self) -> Result<Address, WalletError> {
        self.add(Keypair::generate())
    }

    /// Imports a key from its 32 secret bytes and returns its address (importing a key
    /// already held is not an error).
    pub fn import(&self, secret: &[u8]) -> Result<Address, WalletError> {
        self.add(Keypair::from_secret_bytes(secret)?)
    }

    fn add(&self, key: Keypair) -> Result<Address, WalletError> {
        let address = key.address().clone();
        self.update(|keys| {
            if keys.default.is_none() {
                keys.default = Some(address.clone());
            }
            keys.keys.insert(address.clone(), key);
            Ok(address)
        })
    }

    /// The 32 secret bytes of `address`'s key (for backups). Handle with care.
    pub fn export(&self, address: &Address) -> Result<[u8; SECRET_KEY_LEN], WalletError> {
        self.with_key(address, |k| Ok(k.secret_bytes()))
    }

    /// The addresses held, in byte order.
    pub fn addresses(&self) -> Vec<Address> {
        self.read().keys.keys().cloned().collect()
    }

    /// Whether the wallet holds the key of `address`.
    pub fn contains(&self, address: &Address) -> bool {
        self.read().keys.contains_key(address)
    }

    /// The default address (the first key added unless changed).
    pub fn default_address(&self) -> Option<Address> {
        self.read().default.clone()
    }

    /// Makes `address` (which must be held) the default address.
    pub fn set_default(&self, address: &Address) -> Result<(), WalletError> {
        self.update(|keys| {
            if !keys.keys.contains_key(address) {
                return Err(WalletError::KeyNotFound(address.clone()));
            }
            keys.default = Some(address.clone());
            Ok(())
        })
    }

    /// The uncompressed public key of `address`.
    pub fn public_key(&self, address: &Address) -> Result<[u8; PUBLIC_KEY_LEN], WalletError> {
        self.with_key(address, |k| Ok(*k.public_key()))
    }

    /// Signs `msg` with the key of `address` (see [`Keypair::sign`]).
    pub fn sign(&self, address: &Address, msg: &[u8]) -> Result<Signature, WalletError> {
        self.with_key(address, |k| k.sign(msg))
    }

    fn with_key<T>(
        &self,
        address: &Address,
        f: impl FnOnce(&Keypair) -> Result<T, WalletError>,
    ) -> Result<T, WalletError> {
        let keys = self.read();
        let key = keys
            .keys
            .get(address)
            .ok_or_else(|| WalletError::KeyNotFound(address.clone()))?;
        f(key)
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn load_keystore(file: &Path) -> Result<Option<Keys>, WalletError> {
    let io_err = |source| WalletError::Io {
        path: file.to_path_buf(),
        source,
    };
    let corrupt = |reason: String| WalletError::Corrupt {
        path: file.to_path_buf(),
        reason,
    };
    let mut handle = match fs::File::open(file) {
        Ok(handle) => handle,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let meta = handle.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(corrupt("not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(WalletError::InsecurePermissions {
                path: file.to_path_buf(),
                mode,
            });
        }
    }
    if meta.len() > MAX_KEYSTORE_LEN {
        return Err(corrupt(format!(
            "{} bytes, over the limit of {MAX_KEYSTORE_LEN}",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut handle)
        .take(MAX_KEYSTORE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_KEYSTORE_LEN {
        return Err(corrupt("grew over the size limit while being read".into()));
    }
    let stored: KeystoreFile =
        rm_types::codec::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if stored.version != KEYSTORE_VERSION {
        return Err(corrupt(format!("unknown version {}", stored.version)));
    }
    let mut keys = Keys::default();
    for (i, secret) in stored.keys.iter().enumerate() {
        let key = Keypair::from_secret_bytes(secret)
            .map_err(|_| corrupt(format!("key {i} is not a valid secret key")))?;
        keys.keys.insert(key.address().clone(), key);
    }
    if let Some(default) = &stored.default
        && !keys.keys.contains_key(default)
    {
        return Err(corrupt(format!("default address {default} has no key")));
    }
    keys.default = stored.default.or_else(|| keys.keys.keys().next().cloned());
    Ok(Some(keys))
}

fn store_keystore(file: &Path, keys: &Keys) -> Result<(), WalletError> {
    let stored = KeystoreFile {
        version: KEYSTORE_VERSION,
        default: keys.default.clone(),
        keys: keys
            .keys
            .values()
            .map(|k| serde_bytes::ByteBuf::from(k.secret_bytes().to_vec()))
            .collect(),
    };
    let bytes = rm_types::codec::to_vec(&stored).map_err(|e| WalletError::Corrupt {
        path: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_private_atomic(file, &bytes).map_err(|source| WalletError::Io {
        path: file.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `file` atomically, the file being owner-only (0600) from its creation.
fn write_private_atomic(file: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "keystore path has no file name",
        )
    })?;
    let tmp = file.with_file_name(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut handle = options.open(&tmp)?;
        handle.write_all(bytes)?;
        handle.sync_all()?;
        drop(handle);
        fs::rename(&tmp, file)?;
        #[cfg(unix)]
        if let Some(dir) = file.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        // Best effort: do not leave a stray copy of the secrets behind.
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_recover_round_trip() {
        let key = Keypair::generate();
        let sig = key.sign(b"voucher").unwrap();
        assert_eq!(sig.sig_type, SignatureType::Secp256k1);
        assert_eq!(sig.bytes.len(), 65);
        assert!(sig.bytes[64] <= 1);
        assert_eq!(recover(b"voucher", &sig).unwrap(), *key.address());
        assert_eq!(
            recover_public_key(b"voucher", &sig).unwrap(),
            *key.public_key()
        );
        // deterministic (RFC 6979)
        assert_eq!(key.sign(b"voucher").unwrap(), sig);
    }

    #[test]
    fn high_s_is_normalised_like_fvm() {
        let key = Keypair::generate();
        let sig = key.sign(b"m").unwrap();
        // Build the malleated (r, n - s) with the flipped parity: it must recover the same key.
        let n = num_bigint::BigUint::parse_bytes(
            b"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
            16,
        )
        .unwrap();
        let s = num_bigint::BigUint::from_bytes_be(&sig.bytes[32..64]);
        let high_s = (n - s).to_bytes_be();
        let mut bytes = sig.bytes[..32].to_vec();
        bytes.extend(std::iter::repeat_n(0u8, 32 - high_s.len()));
        bytes.extend_from_slice(&high_s);
        let high = EcdsaSignature::from_slice(&bytes).unwrap();
        assert!(high.normalize_s().is_some(), "s must be high");
        bytes.push(sig.bytes[64] ^ 1);
        let malleated = Signature::new_secp256k1(bytes);
        assert_eq!(recover(b"m", &malleated).unwrap(), *key.address());
    }

    #[test]
    fn verify_rejects_wrong_inputs() {
        let key = Keypair::generate();
        let other = Keypair::generate();
        let sig = key.sign(b"m").unwrap();
        assert!(matches!(
            verify(b"m", &sig, other.address()),
            Err(SignatureError::WrongSigner { .. })
        ));
        assert!(matches!(
            verify(b"m", &sig, &Address::new_id(7)),
            Err(SignatureError::SignerNotSecp256k1(_))
        ));
        let short = Signature::new_secp256k1(sig.bytes[..64].to_vec());
        assert_eq!(
            verify(b"m", &short, key.address()),
            Err(SignatureError::WrongLength(64))
        );
        let mut bad_v = sig.clone();
        bad_v.bytes[64] = 4;
        assert_eq!(
            verify(b"m", &bad_v, key.address()),
            Err(SignatureError::InvalidRecoveryId(4))
        );
        let zero = Signature::new_secp256k1(vec![0; 65]);
        assert_eq!(
            verify(b"m", &zero, key.address()),
            Err(SignatureError::Malformed)
        );
        let bls = Signature {
            sig_type: SignatureType::Bls,
            bytes: vec![0; 96],
        };
        assert_eq!(
            verify(b"m", &bls, key.address()),
            Err(SignatureError::UnsupportedType(SignatureType::Bls))
        );
    }

    #[test]
    fn import_export_and_default() {
        let wallet = Wallet::in_memory();
        assert!(wallet.default_address().is_none());
        assert!(matches!(
            wallet.import(&[0u8; 32]),
            Err(WalletError::InvalidSecretKey)
        ));
        assert!(matches!(
            wallet.import(&[1u8; 31]),
            Err(WalletError::InvalidSecretKey)
        ));
        let a = wallet.import(&[1u8; 32]).unwrap();
        let b = wallet.new_key().unwrap();
        assert_eq!(wallet.default_address(), Some(a.clone()));
        wallet.set_default(&b).unwrap();
        assert_eq!(wallet.default_address(), Some(b.clone()));
        assert!(matches!(
            wallet.set_default(&Address::new_id(1)),
            Err(WalletError::KeyNotFound(_))
        ));
        assert_eq!(wallet.export(&a).unwrap(), [1u8; 32]);
        assert_eq!(
            Keypair::from_secret_bytes(&[1u8; 32]).unwrap().address(),
            &a
        );
        assert!(wallet.contains(&a) && wallet.contains(&b));
        assert_eq!(wallet.addresses().len(), 2);
        assert!(format!("{wallet:?}").contains(&a.to_string()));
        let key = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        assert!(!format!("{key:?}").contains("01010101"));
    }
}
