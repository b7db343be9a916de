//! Webhook secrets and the two signature schemes a receiver can check.
//!
//! * Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//!   `"{id}.{timestamp}.{body}"`, keyed with the base64-decoded part of the
//!   secret after `whsec_`. Any Standard Webhooks or Svix library verifies it.
//!   A secret the user chose in another form keys it with its UTF-8 bytes.
//! * The simple scheme: `X-Webhook-Signature: sha256=<hex>` over the body
//!   alone, keyed with the whole secret string (`whsec_…` included) as
//!   UTF-8.
//! * The hex scheme: the same HMAC as bare lowercase hex, no prefix, in a
//!   header the webhook names.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use herald_shared::delivery::options::SigningOptions;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";

/// Characters of a secret in a form of the user's own, at least.
pub const MIN_OWN_SECRET_CHARS: usize = 16;
/// Characters of any secret, at most.
pub const MAX_SECRET_CHARS: usize = 256;

/// A webhook's signing secret: `whsec_` + base64 of 24–64 bytes (Herald
/// makes these), or a string of the user's own of 16–256 printable
/// characters, used as given.
#[derive(Clone)]
pub struct WebhookSecret {
    /// The secret as the user holds it.
    text: String,
    /// The Standard Webhooks HMAC key: the decoded bytes of a `whsec_`
    /// secret, the UTF-8 bytes of any other.
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// # Errors
    /// A `whsec_` secret with bad base64 or a key outside 24–64 bytes; any
    /// other shorter than 16 characters, longer than 256, or with a space
    /// or a control character in it.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let Some(encoded) = text.strip_prefix(PREFIX) else {
            let chars = text.chars().count();
            if !(MIN_OWN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&chars) {
                return Err(
                    "must be 'whsec_' followed by base64, or a secret of your own of 16 to 256 characters",
                );
            }
            if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("may not contain spaces or control characters");
            }
            return Ok(Self {
                text: text.to_owned(),
                key: text.as_bytes().to_vec(),
            });
        };
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "must be 'whsec_' followed by standard base64")?;
        if !(24..=64).contains(&key.len()) {
            return Err("must encode between 24 and 64 bytes");
        }
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// A fresh secret from 32 random bytes.
    #[must_use]
    pub fn generate() -> Self {
        let key: [u8; 32] = rand::random();
        Self {
            text: format!("{PREFIX}{}", STANDARD.encode(key)),
            key: key.to_vec(),
        }
    }

    /// The secret as the user holds it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `v1,<base64>` for the `webhook-signature` header.
    #[must_use]
    pub fn sign_v1(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = hmac_with(&self.key);
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// `sha256=<hex>` for the `X-Webhook-Signature` header.
    #[must_use]
    pub fn sign_sha256_hex(&self, body: &[u8]) -> String {
        format!("sha256={}", self.sign_hex(body))
    }

    /// The bare lowercase hex HMAC-SHA256 of the body, keyed with the whole
    /// secret string.
    #[must_use]
    pub fn sign_hex(&self, body: &[u8]) -> String {
        let mut mac = hmac_with(self.text.as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The `webhook-signature` value: this secret's signature, then those
    /// of any older secrets still valid, space-separated (the Standard
    /// Webhooks form for rotation; a receiver accepts any one).
    #[must_use]
    pub fn sign_v1_all(
        &self,
        older: &[&WebhookSecret],
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> String {
        let mut header = self.sign_v1(id, timestamp, body);
        for secret in older {
            header.push(' ');
            header.push_str(&secret.sign_v1(id, timestamp, body));
        }
        header
    }

    /// Checks a `webhook-signature` header value (one or more
    /// space-separated `v1,<sig>`) in constant time per candidate.
    #[must_use]
    pub fn verify_v1(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|candidate| {
            let Some(sig) = candidate.strip_prefix("v1,") else {
                return false;
            };
            let Ok(sig) = STANDARD.decode(sig) else {
                return false;
            };
            let mut mac = hmac_with(&self.key);
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            mac.verify_slice(&sig).is_ok()
        })
    }

    /// Checks an `X-Webhook-Signature: sha256=<hex>` value in constant time.
    #[must_use]
    pub fn verify_sha256_hex(&self, body: &[u8], header: &str) -> bool {
        let Some(sig) = header
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        let mut mac = hmac_with(self.text.as_bytes());
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }
}

const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// A webhook's ed25519 key pair for Standard Webhooks `v1a` signatures.
/// Stored as its 32-byte seed (sealed); receivers get the public key as
/// `whpk_<base64>`.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public_key())
    }
}

impl SigningKey {
    /// A fresh key pair and its seed, to be sealed.
    ///
    /// # Errors
    /// The seed could not be turned into a key (it always can).
    pub fn generate() -> Result<(Self, [u8; 32]), &'static str> {
        let seed: [u8; 32] = rand::random();
        Ok((Self::from_seed(&seed)?, seed))
    }

    /// # Errors
    /// A seed that is not 32 bytes.
    pub fn from_seed(seed: &[u8]) -> Result<Self, &'static str> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(|pair| Self { pair })
            .map_err(|_| "an ed25519 seed is 32 bytes")
    }

    /// `whpk_<base64 of the 32-byte public key>`.
    #[must_use]
    pub fn public_key(&self) -> String {
        format!(
            "{PUBLIC_KEY_PREFIX}{}",
            STANDARD.encode(self.pair.public_key().as_ref())
        )
    }

    /// `v1a,<base64 ed25519 signature>` over `"{id}.{timestamp}.{body}"`.
    #[must_use]
    pub fn sign_v1a(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut message = Vec::with_capacity(id.len() + 24 + body.len());
        message.extend_from_slice(format!("{id}.{timestamp}.").as_bytes());
        message.extend_from_slice(body);
        format!("v1a,{}", STANDARD.encode(self.pair.sign(&message).as_ref()))
    }
}

/// Checks a `webhook-signature` header (any of its space-separated
/// signatures) against a `whpk_` public key, as a receiver does.
#[must_use]
pub fn verify_v1a(public_key: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(key) = public_key
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .and_then(|k| STANDARD.decode(k).ok())
    else {
        return false;
    };
    let mut message = format!("{id}.{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let key = UnparsedPublicKey::new(&ED25519, key);
    header.split(' ').any(|candidate| {
        candidate
            .strip_prefix("v1a,")
            .and_then(|sig| STANDARD.decode(sig).ok())
            .is_some_and(|sig| key.verify(&message, &sig).is_ok())
    })
}

fn hmac_with(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own test vector.
    #[test]
    fn reproduces_the_standard_webhooks_reference_vector() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign_v1(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret.verify_v1(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
            &format!("v1,bm90IGl0 {sig}")
        ));
        assert!(!secret.verify_v1("msg_other", 1_614_265_330, br#"{"test": 2432232314}"#, &sig));
    }

    #[test]
    fn hex_scheme_keys_with_the_whole_secret_string() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign_sha256_hex(b"{}");
        let mut mac =
            HmacSha256::new_from_slice(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        mac.update(b"{}");
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert!(secret.verify_sha256_hex(b"{}", &sig));
        assert!(!secret.verify_sha256_hex(b"{ }", &sig));
    }

    #[test]
    fn ed25519_signs_and_verifies_with_the_public_key() {
        let (key, seed) = SigningKey::generate().unwrap();
        let again = SigningKey::from_seed(&seed).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        assert!(key.public_key().starts_with("whpk_"));
        let sig = key.sign_v1a("msg_1", 1_614_265_330, b"{}");
        assert!(sig.starts_with("v1a,"));
        let header = format!("v1,bm90IGl0 {sig}");
        assert!(verify_v1a(
            &key.public_key(),
            "msg_1",
            1_614_265_330,
            b"{}",
            &header
        ));
        assert!(!verify_v1a(
            &key.public_key(),
            "msg_1",
            1_614_265_331,
            b"{}",
            &header
        ));
        let (other, _) = SigningKey::generate().unwrap();
        assert!(!verify_v1a(
            &other.public_key(),
            "msg_1",
            1_614_265_330,
            b"{}",
            &header
        ));
    }

    #[test]
    fn secrets_are_checked_and_generated() {
        // Without the prefix, base64 is a secret of the user's own like any
        // other string.
        let bare = WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(bare.key, b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        // A secret of the user's own: used as given, for every scheme.
        let own = WebhookSecret::parse("webhook-hmac-secret-key").unwrap();
        assert_eq!(own.expose(), "webhook-hmac-secret-key");
        let mut mac = HmacSha256::new_from_slice(b"webhook-hmac-secret-key").unwrap();
        mac.update(b"{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(own.sign_hex(b"{}"), expected);
        assert_eq!(own.sign_sha256_hex(b"{}"), format!("sha256={expected}"));
        let v1 = own.sign_v1("msg_1", 1_700_000_000, b"{}");
        assert!(own.verify_v1("msg_1", 1_700_000_000, b"{}", &v1));
        let mut mac = HmacSha256::new_from_slice(b"webhook-hmac-secret-key").unwrap();
        mac.update(b"msg_1.1700000000.{}");
        assert_eq!(
            v1,
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        );
        for bad in [
            "your-secret-key",
            "sixteen chars ok",
            "tab\tinside-a-secret",
            &"x".repeat(257),
        ] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad:?}");
        }
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
        let generated = WebhookSecret::generate();
        assert!(generated.expose().starts_with("whsec_"));
        let reparsed = WebhookSecret::parse(generated.expose()).unwrap();
        assert_eq!(reparsed.key.len(), 32);
        assert_ne!(WebhookSecret::generate().expose(), generated.expose());
    }
}
