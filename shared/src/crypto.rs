//! Secrets at rest: AES-256-GCM with the key from `security.encryption_key`.
//! A sealed value is `nonce (12 bytes) || ciphertext+tag`.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("security.encryption_key is not set; Herald needs it to store webhook secrets")]
    MissingKey,
    #[error("security.encryption_key must be the base64 of exactly 32 bytes")]
    BadKey,
    #[error("a sealed secret could not be opened (wrong encryption key, or corrupted)")]
    Open,
}

/// Seals and opens secrets with one process-wide key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Arc<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// # Errors
    /// No key configured, or one that is not base64 of 32 bytes.
    pub fn from_config(key: Option<&SecretString>) -> Result<Self, CryptoError> {
        let key = key.ok_or(CryptoError::MissingKey)?;
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| CryptoError::BadKey)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Self {
            cipher: Arc::new(LessSafeKey::new(key)),
        })
    }

    #[must_use]
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        let mut sealed = plaintext.to_vec();
        // Sealing fails only for inputs beyond 64 GiB.
        #[allow(clippy::expect_used)]
        self.cipher
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .expect("AES-GCM seals any secret-sized input");
        out.extend_from_slice(&sealed);
        out
    }

    /// # Errors
    /// A value sealed under another key, or damaged.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .cipher
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| CryptoError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretString {
        SecretString::from(STANDARD.encode([b; 32]))
    }

    #[test]
    fn seals_and_opens() {
        let sealer = Sealer::from_config(Some(&key(7))).unwrap();
        let sealed = sealer.seal(b"whsec_abc");
        assert_ne!(&sealed[NONCE_LEN..], b"whsec_abc");
        assert_eq!(sealer.open(&sealed).unwrap(), b"whsec_abc");
        let other = Sealer::from_config(Some(&key(8))).unwrap();
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn opens_what_any_aes_256_gcm_sealed() {
        // nonce 00..0b || ciphertext || tag, from an independent
        // implementation (Python's cryptography): values sealed by earlier
        // releases stay readable.
        let sealed = hex::decode(
            "000102030405060708090a0b6fe99a157e56b82b1409029d3d77ae29622f98caa340b8f9a3",
        )
        .unwrap();
        let sealer = Sealer::from_config(Some(&key(7))).unwrap();
        assert_eq!(sealer.open(&sealed).unwrap(), b"whsec_abc");
        let mut damaged = sealed;
        damaged[20] ^= 1;
        assert!(sealer.open(&damaged).is_err());
    }

    #[test]
    fn refuses_missing_or_bad_keys() {
        assert!(matches!(
            Sealer::from_config(None),
            Err(CryptoError::MissingKey)
        ));
        let short = SecretString::from(STANDARD.encode([1u8; 16]));
        assert!(matches!(
            Sealer::from_config(Some(&short)),
            Err(CryptoError::BadKey)
        ));
    }
}
