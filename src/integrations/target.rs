//! Where the agent may send a webhook. An endpoint's URL comes from an API caller, so it could
//! name an internal service (SSRF): unless the configuration allows private addresses, the
//! URL's host must resolve to public addresses only, checked when the endpoint is set and again
//! on every connection (the resolver refuses, so a name that later resolves inside is caught),
//! and redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::video::background_source::is_public;

#[derive(Debug, Error, PartialEq)]
pub enum TargetError {
    #[error("the URL is malformed")]
    Malformed,
    #[error("the URL must be https:// (plain http:// is off: webhooks.allow_http)")]
    Scheme,
    #[error("the URL may not carry a user name or password")]
    Credentials,
    #[error("the URL is longer than {0} characters")]
    TooLong(usize),
    #[error("{0} is not a public address (webhooks.allow_private_addresses is off)")]
    Private(String),
}

/// Longest endpoint URL.
pub const MAX_URL_CHARS: usize = 2048;

/// What the configuration allows.
#[derive(Debug, Clone, Copy)]
pub struct TargetPolicy {
    pub allow_http: bool,
    pub allow_private: bool,
}

impl TargetPolicy {
    pub fn from_config(config: &crate::config::WebhooksConfig) -> Self {
        Self {
            allow_http: config.allow_http,
            allow_private: config.allow_private_addresses,
        }
    }

    /// Checks the URL's form, and a literal address in it (names are checked when resolved).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, TargetError> {
        if url.len() > MAX_URL_CHARS {
            return Err(TargetError::TooLong(MAX_URL_CHARS));
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| TargetError::Malformed)?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(TargetError::Scheme),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(TargetError::Credentials);
        }
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(d)) if !d.is_empty() => {}
            _ => return Err(TargetError::Malformed),
        }
        Ok(parsed)
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), TargetError> {
        if self.allow_private || is_public(ip) {
            Ok(())
        } else {
            Err(TargetError::Private(ip.to_string()))
        }
    }

    /// Resolves the URL's host now and checks every address (when the endpoint is set).
    pub async fn check_resolved(&self, url: &reqwest::Url) -> Result<(), TargetError> {
        if self.allow_private {
            return Ok(());
        }
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(()); // a literal, checked by check_url
        };
        for addr in resolve(host).await.map_err(|_| TargetError::Malformed)? {
            self.check_ip(addr.ip())?;
        }
        Ok(())
    }

    /// The HTTP client deliveries use: no redirects, no proxies from the environment, every
    /// resolved address checked.
    pub fn client(&self, timeout: Duration) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!(
                "meeting-agent/",
                env!("CARGO_PKG_VERSION"),
                " webhooks"
            ));
        if !self.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        builder.build().expect("the webhook HTTP client builds")
    }
}

async fn resolve(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host, 0)).await?.collect())
}

/// A resolver that answers only public addresses, and fails when a name has any other.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve(&host).await?;
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(Box::new(TargetError::Private(bad.ip().to_string()))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private: false,
    };

    #[test]
    fn internal_and_malformed_urls_are_refused() {
        for (url, expected) in [
            ("http://example.com/hook", TargetError::Scheme),
            ("file:///etc/passwd", TargetError::Scheme),
            ("gopher://example.com", TargetError::Scheme),
            (
                "https://127.0.0.1/hook",
                TargetError::Private("127.0.0.1".into()),
            ),
            (
                "https://169.254.169.254/latest",
                TargetError::Private("169.254.169.254".into()),
            ),
            ("https://10.1.2.3/", TargetError::Private("10.1.2.3".into())),
            ("https://[::1]/", TargetError::Private("::1".into())),
            (
                "https://[::ffff:192.168.0.1]/",
                TargetError::Private("::ffff:192.168.0.1".into()),
            ),
            ("https://user:pw@example.com/", TargetError::Credentials),
            ("not a url", TargetError::Malformed),
        ] {
            assert_eq!(STRICT.check_url(url).unwrap_err(), expected, "{url}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert_eq!(
            STRICT.check_url(&long).unwrap_err(),
            TargetError::TooLong(MAX_URL_CHARS)
        );
        assert!(STRICT.check_url("https://hooks.example.com/in?x=1").is_ok());
        assert!(STRICT.check_url("https://93.184.216.34/").is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused() {
        let url = STRICT.check_url("https://localhost:9/hook").unwrap();
        assert!(matches!(
            STRICT.check_resolved(&url).await,
            Err(TargetError::Private(_))
        ));
        // And at connection time, whatever was checked before.
        let error = STRICT
            .client(Duration::from_secs(2))
            .post("https://localhost:9/hook")
            .send()
            .await
            .unwrap_err();
        assert!(
            format!("{error:?}").contains("Private(\"127.0.0.1\")"),
            "{error:?}"
        );
    }

    #[test]
    fn tests_may_allow_loopback_http() {
        let open = TargetPolicy {
            allow_http: true,
            allow_private: true,
        };
        assert!(open.check_url("http://127.0.0.1:8080/hook").is_ok());
    }
}
