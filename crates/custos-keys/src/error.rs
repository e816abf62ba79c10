/// Key management errors. They name keys and versions, never key material or passphrases.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key with this name.
    #[error("no key named \"{0}\"")]
    UnknownKey(String),
    /// No key with this id (from a ciphertext header).
    #[error("no key with id {0} in the keystore")]
    UnknownKeyId(u32),
    /// The key exists but not this version.
    #[error("key \"{name}\" has no version {version}")]
    UnknownVersion {
        /// Key name.
        name: String,
        /// Version asked for.
        version: u32,
    },
    /// The version's material was erased.
    #[error("key \"{name}\" version {version} was destroyed")]
    Destroyed {
        /// Key name.
        name: String,
        /// Version.
        version: u32,
    },
    /// The version is disabled.
    #[error("key \"{name}\" version {version} is disabled")]
    Disabled {
        /// Key name.
        name: String,
        /// Version.
        version: u32,
    },
    /// The version is below the key's minimum decryption version.
    #[error("key \"{name}\" version {version} is below the minimum decryption version {min}")]
    BelowMinimum {
        /// Key name.
        name: String,
        /// Version.
        version: u32,
        /// Minimum.
        min: u32,
    },
    /// The key exists already.
    #[error("a key named \"{0}\" already exists")]
    Exists(String),
    /// The key has another purpose than the operation needs.
    #[error("key \"{name}\" has purpose {actual}, but {expected} is needed")]
    WrongPurpose {
        /// Key name.
        name: String,
        /// Its purpose.
        actual: String,
        /// The purpose needed.
        expected: String,
    },
    /// An operation that the key's state forbids.
    #[error("{0}")]
    Refused(String),
    /// The keystore could not be opened: wrong passphrase or modified file.
    #[error("keystore {path}: wrong passphrase, or the file was modified")]
    Unlock {
        /// Keystore file.
        path: String,
    },
    /// The keystore file is not in a format this build reads.
    #[error("keystore {path}: {reason}")]
    Format {
        /// Keystore file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No passphrase was given.
    #[error(
        "no keystore passphrase: set CUSTOS_KEYSTORE_PASSPHRASE or CUSTOS_KEYSTORE_PASSPHRASE_FILE"
    )]
    NoPassphrase,
    /// A key provider failed.
    #[error("key provider \"{provider}\": {reason}")]
    Provider {
        /// Provider name.
        provider: String,
        /// Why.
        reason: String,
    },
    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A primitive failed.
    #[error(transparent)]
    Crypto(#[from] custos_crypto::CryptoError),
}
