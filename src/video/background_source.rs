//! Where a background image may come from. `vb.image` is set by participants (attributes) and
//! API callers, so it is untrusted: it may name only
//! - an image uploaded to the same room through the control API, by its id
//!   (`upload:<sha256>.png|jpg`, stored under `<data_dir>/backgrounds/<room folder>/`), or
//! - an `https://` URL whose host is on the operator's allow-list
//!   (`[video] background_url_hosts`; empty, the default, turns URLs off).
//!
//! Never a local path, a device, another room's upload, or an internal address: the host is
//! resolved first and every address it resolves to must be public; the connection is pinned
//! to the checked address (no second lookup to rebind), redirects are refused, the size cap is
//! enforced while the body streams, and the whole fetch has a deadline.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::background::{BackgroundError, FETCH_TIMEOUT, MAX_BYTES};

/// The longest `vb.image` value considered.
pub const MAX_VALUE_LEN: usize = 2048;

/// A checked background source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackgroundSource {
    /// An image uploaded to this room: its file under the room's upload folder.
    Upload { id: String, path: PathBuf },
    /// An allow-listed https URL (host lower-cased, port explicit).
    Url {
        url: String,
        host: String,
        port: u16,
    },
}

/// What the operator allows (`[video]` in the configuration).
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    uploads_root: PathBuf,
    /// Hosts (`images.example.com`, `*.example.com`, optionally `:port`) https URLs may name.
    url_hosts: Vec<String>,
}

/// The id an uploaded image is referred to by.
pub fn upload_id(digest_hex: &str, ext: &str) -> String {
    format!("upload:{digest_hex}.{ext}")
}

/// Whether `name` is the file name of a stored upload: 64 lower-case hex digits (its
/// SHA-256), then `.png` or `.jpg`.
pub fn is_upload_file_name(name: &str) -> bool {
    name.split_once('.').is_some_and(|(digest, ext)| {
        digest.len() == 64
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && matches!(ext, "png" | "jpg")
    })
}

/// The file name part of an upload id, if `value` is one.
fn parse_upload_id(value: &str) -> Option<&str> {
    value
        .strip_prefix("upload:")
        .filter(|name| is_upload_file_name(name))
}

fn refused(value: &str, why: &str) -> BackgroundError {
    let shown: String = value.chars().take(80).collect();
    BackgroundError::Source(format!("{shown:?}: {why}"))
}

impl SourcePolicy {
    pub fn new(uploads_root: PathBuf, url_hosts: Vec<String>) -> Self {
        Self {
            uploads_root,
            url_hosts: url_hosts
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::new(
            config.data_dir().join("backgrounds"),
            config.video.background_url_hosts.clone(),
        )
    }

    /// The folder every room's upload folder is in.
    pub fn uploads_root(&self) -> &Path {
        &self.uploads_root
    }

    /// The folder of `room`'s uploads. The readable part keeps paths recognisable; the digest
    /// keeps rooms whose names map to the same safe name (`a b`, `a_b`) apart.
    pub fn upload_dir(&self, room: &str) -> PathBuf {
        let digest = Sha256::digest(room.as_bytes());
        let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let readable: String = crate::recording::meta::key_safe(room)
            .chars()
            .take(64)
            .collect();
        self.uploads_root.join(format!("{readable}-{tag}"))
    }

    /// Checks a `vb.image` value for `room`: what it names, or why it is refused.
    pub fn check(&self, room: &str, value: &str) -> Result<BackgroundSource, BackgroundError> {
        let value = value.trim();
        if value.is_empty() || value.len() > MAX_VALUE_LEN {
            return Err(refused(value, "empty or too long"));
        }
        if value.chars().any(char::is_control) {
            return Err(refused(value, "control characters"));
        }
        if let Some(name) = parse_upload_id(value) {
            let path = self.upload_dir(room).join(name);
            // A regular file of ours, not a link, device or FIFO.
            return match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_file() => Ok(BackgroundSource::Upload {
                    id: value.to_string(),
                    path,
                }),
                _ => Err(refused(value, "no such image was uploaded to this room")),
            };
        }
        if value.starts_with("upload:") {
            return Err(refused(
                value,
                "an upload id is upload:<sha256>.png or upload:<sha256>.jpg",
            ));
        }
        if value
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            return self.check_url(value);
        }
        Err(refused(
            value,
            "a background is an image uploaded to this room (upload:<id>) or an https URL the operator allows",
        ))
    }

    fn check_url(&self, value: &str) -> Result<BackgroundSource, BackgroundError> {
        if self.url_hosts.is_empty() {
            return Err(refused(value, "background URLs are not enabled here"));
        }
        let url = reqwest::Url::parse(value).map_err(|e| refused(value, &e.to_string()))?;
        if url.scheme() != "https" {
            return Err(refused(value, "only https URLs"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused(value, "credentials in URLs are not allowed"));
        }
        // `domain()` is None for address literals: URLs must name a host.
        let Some(host) = url.domain().map(str::to_ascii_lowercase) else {
            return Err(refused(value, "URLs must name a host, not an address"));
        };
        let port = url.port_or_known_default().unwrap_or(443);
        if !self.host_allowed(&host, port) {
            return Err(refused(value, "host is not on the allow-list"));
        }
        Ok(BackgroundSource::Url {
            url: url.to_string(),
            host,
            port,
        })
    }

    fn host_allowed(&self, host: &str, port: u16) -> bool {
        self.url_hosts.iter().any(|entry| {
            let (pattern, entry_port) = match entry.rsplit_once(':') {
                Some((h, p)) => match p.parse::<u16>() {
                    Ok(p) => (h, p),
                    Err(_) => return false,
                },
                None => (entry.as_str(), 443),
            };
            if entry_port != port {
                return false;
            }
            match pattern.strip_prefix("*.") {
                Some(domain) => host.len() > domain.len() && host.ends_with(&format!(".{domain}")),
                None => host == pattern,
            }
        })
    }
}

/// Whether `ip` is an address a fetch may connect to: public unicast only. Loopback, private,
/// link-local (cloud metadata), carrier-grade NAT, multicast, documentation, benchmarking,
/// reserved and unspecified ranges are refused, and so are IPv6 forms of them.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64, may reach private IPv4
        || (s[0] == 0x2002) // 6to4, may embed private IPv4
        || ip.to_ipv4().is_some()) // IPv4-compatible
}

/// Reads an uploaded image: a regular file (checked on the open handle), at most `MAX_BYTES`.
pub async fn read_upload(path: &Path) -> Result<Vec<u8>, BackgroundError> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|_| BackgroundError::Fetch("the uploaded image is gone".into()))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| BackgroundError::Fetch(e.to_string()))?;
    if !meta.is_file() {
        return Err(BackgroundError::Fetch("not a regular file".into()));
    }
    if meta.len() > MAX_BYTES as u64 {
        return Err(BackgroundError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| BackgroundError::Fetch(e.to_string()))?;
    if bytes.len() > MAX_BYTES {
        return Err(BackgroundError::TooLarge);
    }
    Ok(bytes)
}

/// Resolves `host` and returns the address to connect to, refusing the host if any address
/// it resolves to is not public (a name that also points inside is not trusted either way).
async fn resolve_public(host: &str, port: u16) -> Result<SocketAddr, BackgroundError> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| BackgroundError::Fetch(format!("cannot resolve {host}")))?
        .take(16)
        .collect();
    if addresses.is_empty() {
        return Err(BackgroundError::Fetch(format!("cannot resolve {host}")));
    }
    if let Some(inside) = addresses.iter().find(|a| !is_public(a.ip())) {
        tracing::warn!(%host, address = %inside.ip(), "background URL resolves to a non-public address; refused");
        return Err(BackgroundError::Source(format!(
            "{host} resolves to a non-public address"
        )));
    }
    Ok(addresses[0])
}

/// Fetches an allow-listed https URL under the rules above.
pub async fn fetch_url(url: &str, host: &str, port: u16) -> Result<Vec<u8>, BackgroundError> {
    let work = async {
        let address = resolve_public(host, port).await?;
        let client = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .resolve(host, address)
            .connect_timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| BackgroundError::Fetch(e.to_string()))?;
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| BackgroundError::Fetch(e.without_url().to_string()))?;
        if response.status().is_redirection() {
            return Err(BackgroundError::Fetch("redirects are not followed".into()));
        }
        if !response.status().is_success() {
            return Err(BackgroundError::Fetch(format!(
                "HTTP {}",
                response.status().as_u16()
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BYTES as u64)
        {
            return Err(BackgroundError::TooLarge);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| BackgroundError::Fetch(e.without_url().to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_BYTES {
                return Err(BackgroundError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| BackgroundError::Timeout(FETCH_TIMEOUT))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> (SourcePolicy, PathBuf) {
        let root =
            std::env::temp_dir().join(format!("ma-bgsrc-{}-{}", std::process::id(), hosts.len()));
        (
            SourcePolicy::new(root.clone(), hosts.iter().map(|h| h.to_string()).collect()),
            root,
        )
    }

    #[test]
    fn local_paths_devices_and_other_schemes_are_refused() {
        let (p, _) = policy(&["images.example.com"]);
        for value in [
            "/dev/zero",
            "/dev/urandom",
            "/proc/self/environ",
            "file:///etc/passwd",
            "../../etc/passwd",
            "backgrounds/other-room/x.png",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8088/metrics",
            "ftp://images.example.com/a.png",
            "upload:../../etc/passwd",
            "upload:ABC.png",
            "",
            "https://images.example.com/a\n.png",
        ] {
            assert!(
                matches!(p.check("weekly", value), Err(BackgroundError::Source(_))),
                "{value:?} must be refused"
            );
        }
        let long = format!("https://images.example.com/{}", "a".repeat(MAX_VALUE_LEN));
        assert!(p.check("weekly", &long).is_err());
    }

    #[test]
    fn urls_need_https_an_allowed_host_and_no_address_literal() {
        let (p, _) = policy(&[
            "images.example.com",
            "*.cdn.example.org",
            "pics.example.net:8443",
        ]);
        assert_eq!(
            p.check("r", "https://Images.Example.com/a.png").unwrap(),
            BackgroundSource::Url {
                url: "https://images.example.com/a.png".into(),
                host: "images.example.com".into(),
                port: 443
            }
        );
        assert!(p.check("r", "https://eu.cdn.example.org/a.jpg").is_ok());
        assert!(p.check("r", "https://pics.example.net:8443/a.jpg").is_ok());
        for bad in [
            "https://cdn.example.org/a.jpg", // the wildcard needs a subdomain
            "https://images.example.com.evil.io/a.png",
            "https://evilimages.example.com/a.png",
            "https://images.example.com:8443/a.png", // another port
            "https://pics.example.net/a.jpg",        // the allowed port only
            "https://user:pw@images.example.com/a.png",
            "https://127.0.0.1/a.png",
            "https://[::1]/a.png",
            "https://169.254.169.254/a.png",
        ] {
            assert!(p.check("r", bad).is_err(), "{bad} must be refused");
        }
        let (off, _) = policy(&[]);
        assert!(off.check("r", "https://images.example.com/a.png").is_err());
    }

    #[test]
    fn uploads_are_found_in_their_own_room_only() {
        let (p, root) = policy(&["x.example"]);
        let digest = "ab".repeat(32);
        let id = upload_id(&digest, "png");
        assert!(p.check("weekly", &id).is_err(), "nothing uploaded yet");
        let dir = p.upload_dir("weekly");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{digest}.png")), b"x").unwrap();
        assert!(matches!(
            p.check("weekly", &id),
            Ok(BackgroundSource::Upload { .. })
        ));
        assert!(p.check("board", &id).is_err(), "another room's upload");
        assert_ne!(p.upload_dir("a b"), p.upload_dir("a_b"));
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn only_public_addresses_are_reachable() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(!is_public(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(outside.parse().unwrap()), "{outside}");
        }
    }

    #[tokio::test]
    async fn a_host_resolving_inside_is_refused_before_connecting() {
        let e = fetch_url("https://localhost/a.png", "localhost", 443)
            .await
            .unwrap_err();
        assert!(matches!(e, BackgroundError::Source(_)), "{e}");
    }

    #[tokio::test]
    async fn uploads_must_be_regular_files() {
        assert!(read_upload(Path::new("/dev/zero")).await.is_err());
        assert!(read_upload(Path::new("/proc")).await.is_err());
    }
}
