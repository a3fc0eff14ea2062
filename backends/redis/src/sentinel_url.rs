//! The `store` URL of a Redis watched by Redis Sentinel:
//! `redis+sentinel://[user:password@]host[:port][,host[:port]…]/service[/db]`, and
//! `rediss+sentinel://…` for TLS to the sentinels and the data nodes alike.
//!
//! The hosts are the sentinels (port 26379 unless given), `service` is the name the
//! sentinels monitor (`sentinel monitor <service> …`), `db` the database number (0 unless
//! given). The user and password are the data nodes' (`requirepass`/ACL): sentinels are
//! asked without credentials, which is how they run unless `requirepass` is set on them
//! (sentinels with a password are not supported yet; docs/configuration.md says so).

use std::fmt;

/// The port sentinels listen on unless the URL says otherwise.
pub const SENTINEL_PORT: u16 = 26379;

/// A parsed `redis+sentinel://` or `rediss+sentinel://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The sentinels, `(host, port)`, in the URL's order.
    pub sentinels: Vec<(String, u16)>,
    /// The monitored service's name (the master name in sentinel.conf).
    pub service: String,
    /// The database number on the data nodes.
    pub db: i64,
    /// The data nodes' user, if any.
    pub username: Option<String>,
    /// The data nodes' password, if any.
    pub password: Option<String>,
    /// Whether the sentinels and data nodes speak TLS (`rediss+sentinel://`).
    pub tls: bool,
}

impl SentinelUrl {
    /// Whether `url` has a sentinel scheme (parse it with [`SentinelUrl::parse`]).
    pub fn is_sentinel(url: &str) -> bool {
        url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
    }

    /// Parses a sentinel URL; the error says what is wrong, never the password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return Err("expected redis+sentinel:// or rediss+sentinel://".into());
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = credentials(userinfo);
        let sentinels = hosts
            .split(',')
            .map(host_port)
            .collect::<Result<Vec<_>, _>>()?;
        let mut parts = path.trim_end_matches('/').split('/');
        let service = parts.next().unwrap_or_default().to_string();
        if service.is_empty() {
            return Err("the service name is missing: …/<service>[/<db>] after the \
                        sentinels, the name in `sentinel monitor <service> …`"
                .into());
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(n) => n
                .parse()
                .map_err(|_| format!("database {n:?} is not a number"))?,
        };
        if let Some(extra) = parts.next() {
            return Err(format!("unexpected path part {extra:?} after the database"));
        }
        Ok(Self {
            sentinels,
            service,
            db,
            username,
            password,
            tls,
        })
    }
}

/// `user:password` (either may be empty) as the two optional values.
fn credentials(userinfo: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(userinfo) = userinfo else {
        return (None, None);
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    (some(user), some(password))
}

/// One `host[:port]` of the sentinel list.
fn host_port(text: &str) -> Result<(String, u16), String> {
    if text.is_empty() {
        return Err("a sentinel address is empty: list them as host:port,host:port".into());
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => port
            .parse()
            .map(|p| (host.to_string(), p))
            .map_err(|_| format!("sentinel {text:?}: port {port:?} is not a number")),
        Some(_) => Err(format!("sentinel {text:?} has no host")),
        None => Ok((text.to_string(), SENTINEL_PORT)),
    }
}

impl fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("service", &self.service)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_form_parses() {
        let u = SentinelUrl::parse("rediss+sentinel://app:S3cret@h1:26380,h2,h3:1/jobs/2")
            .expect("parses");
        assert_eq!(
            u.sentinels,
            vec![
                ("h1".to_string(), 26380),
                ("h2".to_string(), SENTINEL_PORT),
                ("h3".to_string(), 1)
            ]
        );
        assert_eq!((u.service.as_str(), u.db, u.tls), ("jobs", 2, true));
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("S3cret"));
        assert!(!format!("{u:?}").contains("S3cret"));
        let plain = SentinelUrl::parse("redis+sentinel://:pw@h:26379/mymaster").expect("parses");
        assert_eq!((plain.db, plain.tls, plain.username), (0, false, None));
    }

    #[test]
    fn mistakes_are_named() {
        for (url, needle) in [
            ("redis+sentinel://h1:26379", "service name is missing"),
            ("redis+sentinel://h1:x/m", "not a number"),
            ("redis+sentinel://h1,,h2/m", "empty"),
            ("redis+sentinel://h/m/zero", "database"),
            ("redis+sentinel://h/m/0/x", "unexpected"),
            ("redis://h/m", "expected"),
        ] {
            let e = SentinelUrl::parse(url).expect_err(url);
            assert!(e.contains(needle), "{url}: {e}");
        }
    }
}
