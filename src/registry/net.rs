//! What a lookup may reach (SPEC §7): the image's registry, token realms and redirects only
//! over HTTPS to public addresses unless listed, and every response body read with a cap.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{redirect, Response, Url};

use super::error::{describe, parse_error_envelope, LookupError, Refused};

/// Redirects followed per request, same host or not.
pub const MAX_REDIRECTS: usize = 5;

/// Whether a registry, realm or redirect target is let through, and how.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `HOST[:PORT]` reached over plain HTTP (`--insecure-registry`); also allowed on private
    /// addresses.
    pub insecure: Vec<String>,
    /// `HOST[:PORT]` allowed on private, loopback and link-local addresses over HTTPS
    /// (`--allow-registry`).
    pub allowed: Vec<String>,
}

fn listed(entries: &[String], url: &Url) -> bool {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    entries.iter().any(|entry| {
        // `HOST` alone means the scheme's default port.
        let Ok(listed) = Url::parse(&format!("{}://{entry}", url.scheme())) else {
            return false;
        };
        listed.host_str() == Some(host) && listed.port_or_known_default() == Some(port)
    })
}

impl Access {
    /// Plain HTTP is allowed for this `host[:port]` of an image reference.
    pub fn insecure_registry(&self, registry: &str) -> bool {
        self.insecure.iter().any(|entry| entry == registry)
    }

    /// Whether `url`, named by a registry (a token realm, a redirect to another host), may be
    /// fetched: `Ok(true)` when it is listed (any address), `Ok(false)` when it must be on a
    /// public address (checked here for IP literals, at connection for names).
    pub fn outside(&self, url: &Url) -> Result<bool, Refused> {
        let shown = || origin(url);
        let insecure = listed(&self.insecure, url);
        match url.scheme() {
            "https" => {}
            "http" if insecure => {}
            "http" => return Err(Refused::NotHttps(shown())),
            _ => return Err(Refused::BadUrl(shown())),
        }
        if insecure || listed(&self.allowed, url) {
            return Ok(true);
        }
        let Some(host) = url.host_str() else {
            return Err(Refused::BadUrl(shown()));
        };
        // The URL parser has already turned `0x7f.1` and the like into dotted IPv4.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) if !is_public(ip) => Err(Refused::NotPublic(shown())),
            Ok(_) => Ok(false),
            Err(_) if host.eq_ignore_ascii_case("localhost") => Err(Refused::NotPublic(shown())),
            Err(_) => Ok(false),
        }
    }
}

/// `scheme://host:port` of a URL: what error text says of a URL, never its path or query.
pub fn origin(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => format!("{}:", url.scheme()),
    }
}

/// Addresses reachable from anywhere: not private, loopback, link-local, shared (CGNAT, often
/// pod and service ranges), multicast, reserved or documentation ranges, also when an IPv6
/// address embeds an IPv4 one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = ip.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return is_public_v4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ));
            }
            // 6to4 (2002::/16) carries one in bits 16..48.
            if s[0] == 0x2002 {
                return is_public_v4(Ipv4Addr::new(
                    (s[1] >> 8) as u8,
                    s[1] as u8,
                    (s[2] >> 8) as u8,
                    s[2] as u8,
                ));
            }
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible and the like
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

/// Resolves names to public addresses only: the connection-time half of [`Access::outside`],
/// so a name cannot be checked at one address and reached at another.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (list its HOST:PORT with \
                     --allow-registry to allow it)"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether a redirect stays on the origin it came from: followed inside reqwest.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The two HTTP clients of a resolver: `registry` for the image's own registry and listed
/// hosts (redirects followed on the same origin only), `public` for everything else a
/// registry names (public addresses only, no redirects).
#[derive(Clone)]
pub struct Clients {
    pub registry: reqwest::Client,
    pub public: reqwest::Client,
}

impl Clients {
    /// `timeout` bounds connecting and each read. No connection is kept idle for later: a
    /// connection lives as long as its request, so the connections open are at most the
    /// lookups in flight (`MAX_LOOKUPS_IN_FLIGHT`), whatever number of hosts the pods name
    /// (an idle pool per host grows with them); a lookup's few requests each connect anew, and
    /// lookups are rare behind the cache.
    pub fn new(user_agent: &'static str, timeout: std::time::Duration) -> Clients {
        let base = || {
            reqwest::Client::builder()
                .user_agent(user_agent)
                .connect_timeout(timeout)
                .read_timeout(timeout)
                .pool_max_idle_per_host(0)
                .referer(false)
        };
        let same_origin_only = redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first().cloned();
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if first.is_some_and(|first| same_origin(&first, attempt.url())) {
                attempt.follow()
            } else {
                // Handed back as a 3xx; `get` decides.
                attempt.stop()
            }
        });
        Clients {
            registry: base()
                .redirect(same_origin_only)
                .build()
                .expect("a reqwest client builds"),
            public: base()
                .redirect(redirect::Policy::none())
                .dns_resolver(Arc::new(PublicOnly))
                .build()
                .expect("a reqwest client builds"),
        }
    }

    /// GET `url`, an address of the image's registry, following its redirects: on the same
    /// origin always, elsewhere only where [`Access::outside`] allows, and without the
    /// request's headers (credentials stay with the registry).
    pub async fn get(
        &self,
        access: &Access,
        url: Url,
        headers: HeaderMap,
    ) -> Result<Response, LookupError> {
        let mut response = send(self.registry.get(url).headers(headers.clone())).await?;
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let Some(next) = redirect_target(&response) else {
                return Ok(response);
            };
            let listed = access
                .outside(&next)
                .map_err(LookupError::RedirectRefused)?;
            let client = if listed { &self.registry } else { &self.public };
            response = send(client.get(next)).await?;
        }
        Err(LookupError::TooManyRedirects {
            max: MAX_REDIRECTS,
            origin: origin(response.url()),
        })
    }

    /// GET `url`, named by a registry (a token realm), once it passes [`Access::outside`].
    pub async fn get_outside(
        &self,
        access: &Access,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<Response, LookupError> {
        let listed = access.outside(url).map_err(LookupError::Refused)?;
        let client = if listed { &self.registry } else { &self.public };
        let response = send(request(client)).await?;
        if response.status().is_redirection() {
            return Err(LookupError::Redirected {
                origin: origin(url),
                status: response.status(),
            });
        }
        Ok(response)
    }
}

fn redirect_target(response: &Response) -> Option<Url> {
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    response.url().join(location).ok()
}

async fn send(request: reqwest::RequestBuilder) -> Result<Response, LookupError> {
    request.send().await.map_err(|e| LookupError::Network {
        origin: e.url().map(origin).unwrap_or_default(),
        detail: describe(&without_url(e)),
    })
}

/// reqwest's errors print the whole URL; the origin is given once in front instead.
fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}

/// The body of `response`, at most `cap` bytes: refused from its Content-Length when it says
/// more, cut off when it sends more.
pub async fn read_capped(
    mut response: Response,
    cap: usize,
    what: &'static str,
) -> Result<Vec<u8>, LookupError> {
    let declared = response.content_length();
    if let Some(size) = declared.filter(|n| *n > cap as u64) {
        return Err(LookupError::TooLarge { what, size, cap });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = response.chunk().await.map_err(|e| LookupError::Read {
        what,
        detail: describe(&without_url(e)),
    })? {
        if body.len() + chunk.len() > cap {
            return Err(LookupError::Overran { what, cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A status that is not success, said briefly: the code, and the registry's own error codes
/// and messages when it sent the OCI error envelope (never the raw body).
pub async fn status_error(response: Response, cap: usize) -> LookupError {
    let status = response.status();
    let body = read_capped(response, cap, "error body")
        .await
        .unwrap_or_default();
    LookupError::Status {
        status,
        envelope: parse_error_envelope(&body),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("8.8.8.8", true)]
    #[case("10.1.2.3", false)]
    #[case("172.16.0.1", false)]
    #[case("172.32.0.1", true)]
    #[case("192.168.1.1", false)]
    #[case("127.0.0.1", false)]
    #[case("169.254.169.254", false)]
    #[case("100.64.0.1", false)]
    #[case("0.0.0.0", false)]
    #[case("224.0.0.1", false)]
    #[case("::1", false)]
    #[case("::", false)]
    #[case("fd00::1", false)]
    #[case("fe80::1", false)]
    #[case("::ffff:127.0.0.1", false)]
    #[case("::ffff:8.8.8.8", true)]
    #[case("64:ff9b::a9fe:a9fe", false)]
    #[case("2002:0a00:0001::1", false)]
    #[case("2606:4700::1111", true)]
    fn public_addresses(#[case] ip: &str, #[case] public: bool) {
        assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
    }

    fn access() -> Access {
        Access {
            insecure: vec!["127.0.0.1:5000".into()],
            allowed: vec!["auth.internal".into(), "10.0.0.5:8443".into()],
        }
    }

    #[rstest]
    #[case::public_https("https://auth.example.com/token", Ok(false))]
    #[case::plain_http("http://auth.example.com/token", Err("is not HTTPS"))]
    #[case::loopback("https://127.0.0.1/token", Err("private"))]
    #[case::loopback_other_port("http://127.0.0.1:5001/token", Err("is not HTTPS"))]
    #[case::insecure_listed("http://127.0.0.1:5000/token", Ok(true))]
    #[case::metadata("https://169.254.169.254/latest", Err("private"))]
    #[case::ipv6_loopback("https://[::1]/token", Err("private"))]
    #[case::localhost("https://localhost/token", Err("private"))]
    #[case::allowed_default_port("https://auth.internal/token", Ok(true))]
    #[case::allowed_other_port("https://auth.internal:444/token", Ok(false))]
    #[case::allowed_ip("https://10.0.0.5:8443/token", Ok(true))]
    #[case::file("file:///etc/passwd", Err("not a URL"))]
    fn outside_urls(#[case] url: &str, #[case] expected: Result<bool, &str>) {
        let got = access().outside(&url.parse().unwrap());
        match (got, expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{url}"),
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{url}: {e}"),
            (got, expected) => panic!("{url}: {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn origins_leave_out_paths_and_queries() {
        let url: Url = "http://10.0.0.1:8080/secret?token=x".parse().unwrap();
        assert_eq!(origin(&url), "http://10.0.0.1:8080");
    }
}
