-- A webhook's TLS client certificate and key (mTLS), sealed JSON like the
-- outbound credentials; never answered back. The webhook's options say
-- which certificate it is (its SHA-256 fingerprint).
ALTER TABLE webhooks ADD COLUMN client_cert_sealed bytea;
