//! Where Herald may send requests. Endpoint URLs are checked when a webhook
//! is saved, and the addresses a host name resolves to are checked again at
//! delivery time (inside the HTTP client's resolver), so a name that later
//! points at 127.0.0.1 or a cloud metadata address is still refused.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::config::SecuritySettings;

/// Networks no webhook may reach unless `security.allow_private_targets`.
const DENIED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b::/96",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// True for loopback, private, link-local, CGNAT, multicast and reserved
/// addresses, including their IPv4-mapped IPv6 forms.
#[must_use]
pub fn is_denied(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    DENIED.iter().any(|net| {
        net.parse::<IpNet>()
            .map(|n| n.contains(&ip))
            .unwrap_or(false)
    })
}

/// Checks an endpoint URL against the security settings; the error is
/// shown to the API user.
///
/// # Errors
/// Not http(s), plain http while it is refused, credentials in the URL, no
/// host, or a private target while those are refused.
pub fn check_url(raw: &str, security: &SecuritySettings) -> Result<Url, &'static str> {
    let url = Url::parse(raw).map_err(|_| "must be an absolute http(s) URL")?;
    match url.scheme() {
        "https" => {}
        "http" if security.allow_http => {}
        "http" => return Err("must use https (plain http is disabled on this server)"),
        _ => return Err("must be an absolute http(s) URL"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; send them in a custom header");
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment");
    }
    if !security.allow_private_targets {
        match url.host() {
            None => return Err("must have a host"),
            Some(Host::Ipv4(ip)) if is_denied(IpAddr::V4(ip)) => {
                return Err("must not point at a private, loopback or link-local address");
            }
            Some(Host::Ipv6(ip)) if is_denied(IpAddr::V6(ip)) => {
                return Err("must not point at a private, loopback or link-local address");
            }
            Some(Host::Domain(d))
                if d.eq_ignore_ascii_case("localhost")
                    || d.to_ascii_lowercase().ends_with(".localhost") =>
            {
                return Err("must not point at localhost");
            }
            Some(_) => {}
        }
    }
    Ok(url)
}

/// A resolver that drops denied addresses, and fails when none is left.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_denied(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(
                    format!("{host} resolves only to private or reserved addresses").into(),
                );
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The delivery HTTP client: no redirects, no proxy, guarded resolution,
/// connections kept alive. `verify_tls = false` builds the client used for
/// webhooks that turned `verify_ssl` off (only when the server allows it).
///
/// # Errors
/// The TLS backend cannot be initialised.
pub fn delivery_client(
    security: &SecuritySettings,
    verify_tls: bool,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .danger_accept_invalid_certs(!verify_tls);
    if !security.allow_private_targets {
        builder = builder.dns_resolver(Arc::new(GuardedResolver));
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(allow_http: bool, allow_private: bool) -> SecuritySettings {
        SecuritySettings {
            allow_http,
            allow_insecure_tls: false,
            allow_private_targets: allow_private,
            encryption_key: None,
        }
    }

    #[test]
    fn denies_private_and_mapped_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "fd00::1",
        ] {
            assert!(is_denied(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(!is_denied(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_follow_the_security_settings() {
        let strict = security(false, false);
        assert!(check_url("https://example.com/hook", &strict).is_ok());
        assert!(check_url("http://example.com/hook", &strict).is_err());
        assert!(check_url("https://127.0.0.1/hook", &strict).is_err());
        assert!(check_url("https://[::ffff:10.0.0.1]/hook", &strict).is_err());
        assert!(check_url("https://localhost:8443/", &strict).is_err());
        assert!(check_url("https://user:pw@example.com/", &strict).is_err());
        assert!(check_url("ftp://example.com/", &strict).is_err());
        assert!(check_url("not a url", &strict).is_err());
        let dev = security(true, true);
        assert!(check_url("http://127.0.0.1:9000/hook", &dev).is_ok());
    }
}
