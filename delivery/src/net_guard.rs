//! Where Herald may send requests. Endpoint URLs are checked when a webhook
//! is saved, and the addresses a host name resolves to are checked again at
//! delivery time (inside the HTTP client's resolver), so a name that later
//! points at 127.0.0.1 or a cloud metadata address is still refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::egress::Egress;
use herald_shared::runtime::config::SecuritySettings;

/// IPv4 networks no webhook may reach unless
/// `security.allow_private_targets`: every block of the IANA IPv4
/// Special-Purpose Address Registry, plus multicast and the reserved
/// 240.0.0.0/4 (which holds the limited broadcast address).
const DENIED_V4: &[&str] = &[
    "0.0.0.0/8",       // this network
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // shared address space (CGNAT)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link local (cloud metadata lives here)
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // documentation (TEST-NET-1)
    "192.31.196.0/24", // AS112-v4
    "192.52.193.0/24", // AMT
    "192.88.99.0/24",  // deprecated 6to4 relay anycast
    "192.168.0.0/16",  // private
    "192.175.48.0/24", // direct delegation AS112 service
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation (TEST-NET-2)
    "203.0.113.0/24",  // documentation (TEST-NET-3)
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, and 255.255.255.255
];

/// IPv6 networks refused inside the global unicast space 2000::/3 (every
/// address outside it is refused, but for the NAT64 prefix below): the
/// blocks of the IANA IPv6 Special-Purpose Address Registry that lie there.
const DENIED_V6: &[&str] = &[
    "2001::/23",         // IETF protocol assignments: Teredo, benchmarking, ORCHID, AMT, …
    "2001:db8::/32",     // documentation
    "2620:4f:8000::/48", // direct delegation AS112 service
    "3fff::/20",         // documentation
];

/// Parsed once: the lists above.
static DENIED: LazyLock<(Vec<Ipv4Net>, Vec<Ipv6Net>)> = LazyLock::new(|| {
    let v4 = DENIED_V4.iter().filter_map(|n| n.parse().ok()).collect();
    let v6 = DENIED_V6.iter().filter_map(|n| n.parse().ok()).collect();
    (v4, v6)
});

/// True for every address a webhook may not reach: loopback, private,
/// link-local, shared, documentation, benchmarking, multicast, reserved and
/// the other special-purpose blocks, in IPv4 and IPv6, including IPv4
/// addresses embedded in IPv6 (IPv4-mapped, IPv4-compatible, NAT64, 6to4).
#[must_use]
pub fn is_denied(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_denied_v4(v4),
        IpAddr::V6(v6) => is_denied_v6(v6),
    }
}

fn is_denied_v4(ip: Ipv4Addr) -> bool {
    DENIED.0.iter().any(|n| n.contains(&ip))
}

fn is_denied_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // IPv4-mapped (::ffff:a.b.c.d) is that IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_denied_v4(v4);
    }
    // The NAT64 well-known prefix 64:ff9b::/96 reaches the IPv4 address in
    // its last 32 bits: allowed only where that address is.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_denied_v4(embedded(segments[6], segments[7]));
    }
    // Outside global unicast: loopback, unspecified, IPv4-compatible
    // (::a.b.c.d), local-use NAT64 (64:ff9b:1::/48), discard-only
    // (100::/64), unique local, site-local, link-local, multicast, …
    if segments[0] & 0xe000 != 0x2000 {
        return true;
    }
    // 6to4 (2002::/16) carries an IPv4 address in bits 16 to 48.
    if segments[0] == 0x2002 && is_denied_v4(embedded(segments[1], segments[2])) {
        return true;
    }
    DENIED.1.iter().any(|n| n.contains(&ip))
}

/// A host name that names this machine, whatever DNS says.
fn is_local_name(domain: &str) -> bool {
    // `localhost.` is `localhost`: the root's trailing dot changes nothing.
    let name = domain.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.is_empty()
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
                return Err(
                    "must not point at a private, loopback, link-local or other special-purpose address",
                );
            }
            Some(Host::Ipv6(ip)) if is_denied(IpAddr::V6(ip)) => {
                return Err(
                    "must not point at a private, loopback, link-local or other special-purpose address",
                );
            }
            Some(Host::Domain(d)) if is_local_name(d) => {
                return Err("must not point at localhost");
            }
            Some(_) => {}
        }
    }
    Ok(url)
}

/// A host name whose every address is refused: a permanent failure, not a
/// connection error worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("blocked: {0} resolves only to private or special-purpose addresses")]
pub struct BlockedTarget(String);

impl BlockedTarget {
    /// The refusal of `host`, for the resolvers of this crate.
    pub(crate) fn new(host: impl Into<String>) -> Self {
        Self(host.into())
    }

    /// The guard's refusal somewhere in an error's causes, if it is one.
    #[must_use]
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut source = Some(e);
        while let Some(s) = source {
            if let Some(blocked) = s.downcast_ref::<Self>() {
                return Some(blocked);
            }
            source = s.source();
        }
        None
    }
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
                    Box::new(BlockedTarget(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The delivery HTTP client: no redirects, guarded resolution, connections
/// kept alive. `verify_tls = false` builds the client used for webhooks
/// that turned `verify_ssl` off (only when the server allows it).
///
/// Without `egress` no proxy is used, whatever `HTTP(S)_PROXY` say. With
/// it every request goes through that relay, which resolves and checks each
/// target itself before it asks `delivery.proxy_url` for a tunnel to the
/// checked address (the client then resolves nothing).
///
/// # Errors
/// The TLS backend cannot be initialised.
pub fn delivery_client(
    security: &SecuritySettings,
    verify_tls: bool,
    egress: Option<&Egress>,
) -> reqwest::Result<reqwest::Client> {
    client_with_identity(security, verify_tls, egress, None)
}

/// [`delivery_client`] presenting a TLS client certificate (a webhook's
/// mTLS identity) when `identity` is given.
///
/// # Errors
/// The TLS backend cannot be initialised, or takes no such identity.
pub fn client_with_identity(
    security: &SecuritySettings,
    verify_tls: bool,
    egress: Option<&Egress>,
    identity: Option<reqwest::Identity>,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .danger_accept_invalid_certs(!verify_tls);
    builder = match egress {
        Some(egress) => builder.proxy(egress.proxy()),
        None => builder.no_proxy(),
    };
    if !security.allow_private_targets {
        builder = builder.dns_resolver(Arc::new(GuardedResolver));
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build()
}

/// A transport error with its causes, e.g. "connection error: tcp connect
/// error: Connection refused (os error 111)". Never the URL (reqwest's own
/// text has it, and a URL may carry credentials in its query). The causes
/// may quote what the endpoint sent, so the text is cleaned for storage.
pub fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    herald_shared::text::clean(&describe_raw(e, timeout)).into_owned()
}

fn describe_raw(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}s", timeout.as_secs());
    }
    let mut text = if e.is_connect() {
        "connection error".to_owned()
    } else {
        "request error".to_owned()
    };
    push_causes(e, &mut text);
    text
}

/// Appends `": cause"` for each of an error's causes.
pub(crate) fn push_causes(e: &(dyn std::error::Error + 'static), text: &mut String) {
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
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
    fn denies_every_special_purpose_block_and_embedded_ipv4() {
        for ip in [
            // IPv4 special-purpose blocks.
            "0.0.0.0",
            "192.0.0.9",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            // IPv4-compatible, NAT64 (local-use, and well-known with a
            // private address), 6to4 of a private address, Teredo.
            "::127.0.0.1",
            "::",
            "64:ff9b:1::a00:1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            // Site-local, discard-only, documentation, ULA, link-local,
            // multicast, benchmarking, ORCHIDv2, AS112.
            "fec0::1",
            "100::1",
            "2001:db8::1",
            "3fff::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:2::1",
            "2001:20::1",
            "2620:4f:8000::1",
            "5f00::1",
        ] {
            assert!(is_denied(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2a00:1450:4001:81b::200e",
        ] {
            assert!(!is_denied(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_special_purpose_targets_are_refused_in_urls() {
        let strict = security(false, false);
        for url in [
            "https://[::127.0.0.1]/",
            "https://[64:ff9b:1::a00:1]/",
            "https://[2002:7f00:1::]/",
            "https://[fec0::1]/",
            "https://[100::1]/",
            "https://localhost./",
            "https://LOCALHOST/",
            "https://a.localhost./",
            "https://2130706433/",
            "https://127.1/",
            "https://0x7f.1/",
        ] {
            assert!(check_url(url, &strict).is_err(), "{url}");
        }
        assert!(check_url("https://[2606:2800:220:1::1]/", &strict).is_ok());
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
