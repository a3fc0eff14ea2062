//! Secrets out of URLs before they reach a log line or an error: the one function every
//! crate uses for that, below both the configuration and the addresses it names.

/// A URL with its secrets replaced by `***`, for logs and errors: the password of the
/// user info (`scheme://user:***@host`) and the value of every query parameter whose
/// name says it is one (`password`, `passwd`, `secret`, `token`, `auth`, any case).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (before_query, query) = match rest.find(['?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{path}{}", redact_query(query))
}

/// `?a=1&password=x#f` with secret values masked; the separators are kept.
fn redact_query(query: &str) -> String {
    const SECRET: [&str; 5] = ["password", "passwd", "secret", "token", "auth"];
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(sep_at) = rest.find(['?', '&', ';', '#']) {
        out.push_str(&rest[..sep_at]);
        let sep = &rest[sep_at..=sep_at];
        out.push_str(sep);
        rest = &rest[sep_at + 1..];
        let end = rest.find(['&', ';', '#']).unwrap_or(rest.len());
        let (pair, tail) = rest.split_at(end);
        match pair.split_once('=') {
            Some((name, _)) if SECRET.iter().any(|s| name.to_ascii_lowercase().contains(s)) => {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => out.push_str(pair),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact("embedded"), "embedded");
        // The canary never shows, whatever form carries it.
        for (url, shown) in [
            ("kafka://u:S3cret@127.0.0.1:1", "kafka://u:***@127.0.0.1:1"),
            (
                "kafka://host:1?password=S3cret",
                "kafka://host:1?password=***",
            ),
            (
                "amqp://h/%2f?heartbeat=10&auth_token=S3cret",
                "amqp://h/%2f?heartbeat=10&auth_token=***",
            ),
            (
                "rediss://h:6380/0?Password=S3cret#x",
                "rediss://h:6380/0?Password=***#x",
            ),
            ("redis://u:p@ss:S3cret@h/", "redis://u:***@h/"),
            ("amqp://u@h?secret=S3cret;x=1", "amqp://u@h?secret=***;x=1"),
        ] {
            let out = redact(url);
            assert_eq!(out, shown, "{url}");
            assert!(!out.contains("S3cret"), "{url} -> {out}");
        }
    }
}
