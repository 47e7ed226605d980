//! Database URLs without their secrets, for messages and logs.

/// A database URL without its secrets, for messages: the password of `user:password@`, and
/// the values of query parameters (or of a `key=value` connection string's words) whose names
/// say they are secret (`password`, `sslpassword`, `token`, `api_key`, `secret`, ...).
pub fn redact_url(url: &str) -> String {
    let Some(scheme) = url.find("://").map(|i| i + 3) else {
        return match url.split_once('?') {
            Some((base, query)) => format!("{base}?{}", redact_query(query)),
            None if url.contains('=') => redact_words(url),
            None => url.to_string(),
        };
    };
    let rest = &url[scheme..];
    // The credentials end at the last `@` (a password may hold `/`, `?` or `#` unencoded),
    // unless what comes before it looks like a query (`?email=a@b`): then at the last `@`
    // of the authority.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest
        .rfind('@')
        .filter(|&at| !rest[..at].contains('='))
        .or_else(|| rest[..authority_end].rfind('@'));
    let (userinfo, after) = match at {
        Some(at) => (
            match rest[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                None => format!("{}@", &rest[..at]),
            },
            &rest[at + 1..],
        ),
        None => (String::new(), rest),
    };
    let after = match after.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_query(query)),
        None => after.to_string(),
    };
    format!("{}{userinfo}{after}", &url[..scheme])
}

/// Whether a parameter's name says its value is a secret.
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "key",
        "credential",
        "auth",
        "signature",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// A query string (and fragment) with secret parameters' values replaced by `***`.
fn redact_query(query: &str) -> String {
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut out = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// A libpq-style `key=value key='quoted value'` string with secret values replaced by `***`.
fn redact_words(conninfo: &str) -> String {
    let mut out = String::with_capacity(conninfo.len());
    let mut chars = conninfo.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            out.push(c);
            chars.next();
            continue;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        out.push_str(&name);
        // Spaces may surround `=`.
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            out.push(chars.next().unwrap_or(' '));
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        out.push('=');
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            out.push(chars.next().unwrap_or(' '));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            value.push('\'');
            chars.next();
            while let Some(c) = chars.next() {
                value.push(c);
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    _ => {}
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if is_secret_parameter(&name) {
            out.push_str("***");
        } else {
            out.push_str(&value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_passwords_and_secret_parameters() {
        let cases = [
            (
                "postgres://agent:s3cret@db.example:5432/meetings",
                "postgres://agent:***@db.example:5432/meetings",
            ),
            (
                "postgres://db.example/meetings?user=agent&password=s3cret&sslmode=require",
                "postgres://db.example/meetings?user=agent&password=***&sslmode=require",
            ),
            (
                "postgres://agent:pw@db/m?sslpassword=s3cret&sslmode=verify-full&Token=s3cret#x",
                "postgres://agent:***@db/m?sslpassword=***&sslmode=verify-full&Token=***#x",
            ),
            (
                "postgres:///m?host=/run/pg&api_key=s3cret&secret=s3cret&access_token=s3cret",
                "postgres:///m?host=/run/pg&api_key=***&secret=***&access_token=***",
            ),
            // A raw `@`, `/` or `?` in the password.
            (
                "postgres://agent:p@ss/w?rd@db/m",
                "postgres://agent:***@db/m",
            ),
            // An `@` in a query value is not a password's end.
            (
                "postgres://agent:s3cret@db/m?application_name=a@b",
                "postgres://agent:***@db/m?application_name=a@b",
            ),
            (
                "sqlite:/var/lib/agent/store.db?mode=rwc&key=s3cret",
                "sqlite:/var/lib/agent/store.db?mode=rwc&key=***",
            ),
            (
                "host=db user=agent password=s3cret dbname=m",
                "host=db user=agent password=*** dbname=m",
            ),
            (
                "host=db password = 'se cr3t \\' s3cret' sslpassword=s3cret dbname=m",
                "host=db password = *** sslpassword=*** dbname=m",
            ),
            ("postgres://agent@db/m", "postgres://agent@db/m"),
            ("sqlite::memory:", "sqlite::memory:"),
        ];
        for (url, redacted) in cases {
            let out = redact_url(url);
            assert_eq!(out, redacted, "{url}");
            assert!(!out.contains("s3cret") && !out.contains("cr3t"), "{out}");
        }
    }
}
