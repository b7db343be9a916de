//! TLS client certificates (mTLS): a webhook may present a certificate to
//! endpoints that require one. The PEM certificate chain and private key
//! are checked when the webhook is saved, sealed at rest like outbound
//! credentials, and never answered back; the API shows the leaf
//! certificate's SHA-256 fingerprint.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

pub use herald_shared::delivery::options::ClientCertificate;

/// Bytes of a certificate chain or key in PEM, at most.
const MAX_PEM_BYTES: usize = 64 * 1024;

/// A certificate chain and its private key, in PEM.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentity {
    /// The client certificate (`-----BEGIN CERTIFICATE-----`), then any
    /// intermediates.
    pub certificate: String,
    /// Its private key: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA
    /// PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`).
    pub private_key: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(..)")
    }
}

/// The DER of each PEM block labelled `label` (`CERTIFICATE`…).
fn pem_blocks(pem: &str, labels: &[&str]) -> Result<Vec<Vec<u8>>, String> {
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let label_end = after.find("-----").ok_or("a PEM header is not closed")?;
        let label = &after[..label_end];
        let body = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let end = body
            .find(&end_marker)
            .ok_or_else(|| format!("the PEM block {label} has no end"))?;
        if labels.contains(&label) {
            let text: String = body[..end]
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let der = STANDARD
                .decode(text)
                .map_err(|_| format!("the PEM block {label} is not base64"))?;
            blocks.push(der);
        }
        rest = &body[end + end_marker.len()..];
    }
    Ok(blocks)
}

impl ClientIdentity {
    /// Checks the PEM and that a TLS client can be built with it; answers
    /// the field at fault and why.
    ///
    /// # Errors
    /// `(field, reason)` for a 422.
    pub fn check(&self) -> Result<ClientCertificate, (&'static str, String)> {
        let cert_field = "client_certificate.certificate";
        let key_field = "client_certificate.private_key";
        if self.certificate.len() > MAX_PEM_BYTES {
            return Err((cert_field, format!("must be at most {MAX_PEM_BYTES} bytes")));
        }
        if self.private_key.len() > MAX_PEM_BYTES {
            return Err((key_field, format!("must be at most {MAX_PEM_BYTES} bytes")));
        }
        let certs = pem_blocks(&self.certificate, &["CERTIFICATE"]).map_err(|e| (cert_field, e))?;
        let Some(leaf) = certs.first() else {
            return Err((cert_field, "holds no PEM CERTIFICATE block".to_owned()));
        };
        let keys = pem_blocks(
            &self.private_key,
            &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"],
        )
        .map_err(|e| (key_field, e))?;
        if keys.len() != 1 {
            return Err((
                key_field,
                "must hold exactly one PEM private key".to_owned(),
            ));
        }
        self.identity()
            .and_then(|identity| {
                reqwest::Client::builder()
                    .identity(identity)
                    .build()
                    .map(drop)
            })
            .map_err(|e| {
                (
                    "client_certificate",
                    format!("is not a usable certificate and key: {}", source_text(&e)),
                )
            })?;
        Ok(ClientCertificate {
            fingerprint_sha256: hex::encode(Sha256::digest(leaf)),
        })
    }

    /// The identity a client presents.
    ///
    /// # Errors
    /// PEM that does not parse.
    pub fn identity(&self) -> reqwest::Result<reqwest::Identity> {
        let mut pem = Vec::with_capacity(self.private_key.len() + self.certificate.len() + 1);
        pem.extend_from_slice(self.private_key.as_bytes());
        pem.push(b'\n');
        pem.extend_from_slice(self.certificate.as_bytes());
        reqwest::Identity::from_pem(&pem)
    }
}

/// An error with its causes.
fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    crate::net_guard::push_causes(e, &mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_read_by_label_and_garbage_is_refused() {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n\
                   -----BEGIN OTHER-----\nBAU=\n-----END OTHER-----\n";
        assert_eq!(
            pem_blocks(pem, &["CERTIFICATE"]).unwrap(),
            vec![vec![0, 1, 2, 3]]
        );
        assert!(pem_blocks("-----BEGIN CERTIFICATE-----\nAAEC", &["CERTIFICATE"]).is_err());
        assert!(
            pem_blocks(
                "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----",
                &["CERTIFICATE"]
            )
            .is_err()
        );
        let none = ClientIdentity {
            certificate: "not pem".to_owned(),
            private_key: "not pem".to_owned(),
        };
        assert_eq!(
            none.check().unwrap_err().0,
            "client_certificate.certificate"
        );
    }
}
