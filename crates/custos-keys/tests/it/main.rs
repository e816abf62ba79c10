//! Keystore lifecycle, tamper detection and crypto-shredding.
#![allow(clippy::unwrap_used)]

use custos_crypto::aead::{AeadDecryptor, AeadEncryptor, header_of};
use custos_keys::{KdfParams, Keystore, Passphrase, Purpose, VersionState};

fn fast() -> KdfParams {
    KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        lanes: 1,
    }
}

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.to_string())
}

#[tokio::test]
async fn lifecycle_and_crypto_shredding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.ck");
    let mut ks = Keystore::init(&path, &pass("correct horse"), fast()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    ks.create("pii-main", Purpose::Aead).await.unwrap();
    ks.create("joins", Purpose::Daead).await.unwrap();
    assert_eq!(
        ks.create("pii-main", Purpose::Aead)
            .await
            .unwrap_err()
            .to_string(),
        "a key named \"pii-main\" already exists"
    );
    assert!(ks.create("Bad Name", Purpose::Aead).await.is_err());

    let (id, v1, k1) = ks.encryption_key("pii-main", Purpose::Aead).await.unwrap();
    assert_eq!(v1, 1);
    assert_eq!(k1.len(), 32);
    let ct = AeadEncryptor::new(id, v1, &k1)
        .unwrap()
        .encrypt(b"alice", b"t\0email")
        .unwrap();
    assert_eq!(
        ks.encryption_key("pii-main", Purpose::Hmac)
            .await
            .unwrap_err()
            .to_string(),
        "key \"pii-main\" has purpose aead, but hmac is needed"
    );
    let (_, _, kj) = ks.encryption_key("joins", Purpose::Daead).await.unwrap();
    assert_eq!(kj.len(), 64);

    // Rotate: v2 becomes primary, v1 decrypt-only and still decrypts.
    assert_eq!(ks.rotate("pii-main").await.unwrap(), 2);
    let k = ks.key("pii-main").unwrap();
    assert_eq!(k.version(1).unwrap().state, VersionState::DecryptOnly);
    assert_eq!(k.primary().unwrap().version, 2);
    let h = header_of(&ct).unwrap();
    let key = ks.decryption_key(h.key_id, h.version).await.unwrap();
    assert_eq!(
        AeadDecryptor::new()
            .decrypt(&ct, &key, b"t\0email")
            .unwrap(),
        b"alice"
    );

    // The primary cannot be disabled or destroyed.
    assert_eq!(
        ks.destroy("pii-main", 2).unwrap_err().to_string(),
        "key \"pii-main\" version 2 is the primary; rotate before disabling or destroying it"
    );
    // Disable / enable.
    ks.disable("pii-main", 1).unwrap();
    assert_eq!(
        ks.decryption_key(h.key_id, 1)
            .await
            .unwrap_err()
            .to_string(),
        "key \"pii-main\" version 1 is disabled"
    );
    ks.enable("pii-main", 1).unwrap();
    assert!(ks.decryption_key(h.key_id, 1).await.is_ok());
    // Minimum version.
    assert!(ks.set_min_version("pii-main", 3).is_err());
    ks.set_min_version("pii-main", 2).unwrap();
    assert_eq!(
        ks.decryption_key(h.key_id, 1)
            .await
            .unwrap_err()
            .to_string(),
        "key \"pii-main\" version 1 is below the minimum decryption version 2"
    );
    // Destroy: the material is gone, also after reopening.
    ks.destroy("pii-main", 1).unwrap();
    drop(ks);
    let ks = Keystore::open(&path, &pass("correct horse")).unwrap();
    assert!(
        ks.key("pii-main")
            .unwrap()
            .version(1)
            .unwrap()
            .wrapped
            .is_none()
    );
    assert_eq!(
        ks.decryption_key(h.key_id, 1)
            .await
            .unwrap_err()
            .to_string(),
        "key \"pii-main\" version 1 was destroyed"
    );
    assert_eq!(
        ks.decryption_key(99, 1).await.unwrap_err().to_string(),
        "no key with id 99 in the keystore"
    );
    // The key bytes of v1 are nowhere in the file.
    let file = std::fs::read(&path).unwrap();
    assert!(!file.windows(32).any(|w| w == k1.expose()));
}

#[tokio::test]
async fn tampering_truncation_and_wrong_passphrase_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ks");
    let mut ks = Keystore::init(&path, &pass("pw"), fast()).unwrap();
    ks.create("tokens", Purpose::Hmac).await.unwrap();
    let shown = path.display().to_string();
    assert_eq!(
        Keystore::open(&path, &pass("wrong"))
            .unwrap_err()
            .to_string(),
        format!("keystore {shown}: wrong passphrase, or the file was modified")
    );
    let good = std::fs::read(&path).unwrap();
    // Flip one bit in every byte position (a sample of bits keeps Argon2 calls bounded).
    for i in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let err = Keystore::open(&path, &pass("pw")).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("keystore {shown}: ")),
            "byte {i}: {err}"
        );
    }
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert_eq!(
        Keystore::open(&path, &pass("pw")).unwrap_err().to_string(),
        format!("keystore {shown}: wrong passphrase, or the file was modified")
    );
    std::fs::write(&path, &good[..20]).unwrap();
    assert_eq!(
        Keystore::open(&path, &pass("pw")).unwrap_err().to_string(),
        format!("keystore {shown}: file is truncated")
    );
    std::fs::write(&path, b"hello").unwrap();
    assert_eq!(
        Keystore::open(&path, &pass("pw")).unwrap_err().to_string(),
        format!("keystore {shown}: not a custos keystore")
    );
    std::fs::write(&path, &good).unwrap();
    assert!(Keystore::open(&path, &pass("pw")).is_ok());
    assert!(
        Keystore::init(&path, &pass("pw"), fast()).is_err(),
        "init never overwrites"
    );
    assert_eq!(format!("{:?}", pass("CANARY")), "[redacted]");
}
