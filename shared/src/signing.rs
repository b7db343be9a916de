//! Webhook secrets and the two signature schemes a receiver can check.
//!
//! * Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//!   `"{id}.{timestamp}.{body}"`, keyed with the base64-decoded part of the
//!   secret after `whsec_`. Any Standard Webhooks or Svix library verifies it.
//! * The seeds' simpler scheme: `X-Webhook-Signature: sha256=<hex>` over the
//!   body alone, keyed with the whole secret string (`whsec_…`) as UTF-8.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";

/// A webhook's signing secret: `whsec_` + base64 of 24–64 bytes.
#[derive(Clone)]
pub struct WebhookSecret {
    /// The secret as the user holds it (`whsec_…`).
    text: String,
    /// The decoded key bytes, the Standard Webhooks HMAC key.
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// # Errors
    /// No `whsec_` prefix, bad base64, or a key outside 24–64 bytes.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or("must start with 'whsec_'")?;
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
        let mut mac = hmac_with(self.text.as_bytes());
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
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
    fn secrets_are_checked_and_generated() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
        let generated = WebhookSecret::generate();
        assert!(generated.expose().starts_with("whsec_"));
        let reparsed = WebhookSecret::parse(generated.expose()).unwrap();
        assert_eq!(reparsed.key.len(), 32);
        assert_ne!(WebhookSecret::generate().expose(), generated.expose());
    }
}
