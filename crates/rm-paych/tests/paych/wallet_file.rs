//! The keystore file: owner-only permissions, atomic rewrite, reload, refusal of an
//! exposed file.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use rm_paych::wallet::{KEYSTORE_FILE, Wallet, WalletError};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keystore_is_owner_only_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let wallet = Wallet::open(&home).unwrap();
    let file = home.join(KEYSTORE_FILE);
    assert!(!file.exists(), "nothing is written before the first key");
    let a = wallet.new_key().unwrap();
    let b = wallet.import(&[7u8; 32]).unwrap();
    wallet.set_default(&b).unwrap();
    assert_eq!(wallet.keystore_path(), Some(file.as_path()));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&home) & 0o077, 0, "a created home is private too");
    // only the keystore: no temporary copies left behind
    let names: Vec<_> = fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(KEYSTORE_FILE)]);

    let sig = wallet.sign(&a, b"m").unwrap();
    drop(wallet);
    let reopened = Wallet::open(&home).unwrap();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(reopened.addresses(), expected);
    assert_eq!(reopened.default_address(), Some(b.clone()));
    assert_eq!(reopened.sign(&a, b"m").unwrap(), sig);
    assert_eq!(reopened.export(&b).unwrap(), [7u8; 32]);
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn refuses_a_keystore_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = Wallet::open(dir.path()).unwrap();
    wallet.new_key().unwrap();
    let file = dir.path().join(KEYSTORE_FILE);
    for exposed in [0o644, 0o640, 0o604, 0o660, 0o602] {
        fs::set_permissions(&file, fs::Permissions::from_mode(exposed)).unwrap();
        match Wallet::open(dir.path()) {
            Err(WalletError::InsecurePermissions { mode, .. }) => assert_eq!(mode, exposed),
            other => panic!("mode {exposed:o}: expected InsecurePermissions, got {other:?}"),
        }
    }
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(Wallet::open(dir.path()).unwrap().addresses().len(), 1);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(Wallet::open(dir.path()).unwrap().addresses().len(), 1);
}

#[test]
fn rejects_a_corrupt_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(KEYSTORE_FILE);
    let mut options = fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.write(true).create_new(true);
    std::io::Write::write_all(
        &mut options.open(&file).unwrap(),
        b"\xa1\x61xnot a keystore",
    )
    .unwrap();
    assert!(matches!(
        Wallet::open(dir.path()),
        Err(WalletError::Corrupt { .. })
    ));
    // a well-formed keystore holding an invalid (zero) secret key
    #[derive(serde::Serialize)]
    struct Keystore {
        version: u64,
        default: Option<rm_types::Address>,
        keys: Vec<serde_bytes::ByteBuf>,
    }
    let zero_key = Keystore {
        version: 1,
        default: None,
        keys: vec![serde_bytes::ByteBuf::from(vec![0u8; 32])],
    };
    fs::write(&file, rm_types::codec::to_vec(&zero_key).unwrap()).unwrap();
    assert!(
        matches!(Wallet::open(dir.path()), Err(WalletError::Corrupt { reason, .. }) if reason.contains("key 0"))
    );
    let unknown_version = Keystore {
        version: 2,
        default: None,
        keys: Vec::new(),
    };
    fs::write(&file, rm_types::codec::to_vec(&unknown_version).unwrap()).unwrap();
    assert!(
        matches!(Wallet::open(dir.path()), Err(WalletError::Corrupt { reason, .. }) if reason.contains("version"))
    );
    let empty = Keystore {
        version: 1,
        default: None,
        keys: Vec::new(),
    };
    fs::write(&file, rm_types::codec::to_vec(&empty).unwrap()).unwrap();
    assert!(Wallet::open(dir.path()).unwrap().addresses().is_empty());
}
