//! Datastore URLs: which backend a URL names, how SQLite URLs are opened, and how passwords
//! are kept out of messages.

use std::fmt;

/// The database behind a [`Datastore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, a local file (or memory, for tests).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend a datastore URL names, if any.
    pub fn from_url(url: &str) -> Option<Backend> {
        let lower = url.trim_start().to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// A short lowercase name: `"sqlite"` or `"postgres"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returns `url` with any password replaced by `***`: both the password of
/// `scheme://user:password@host` and a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = if head.is_empty() {
        0
    } else {
        rest.find(['/', '?', '#']).unwrap_or(rest.len())
    };
    let (authority, tail) = rest.split_at(authority_end);

    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(host);
        }
        None => out.push_str(authority),
    }

    let (path, query) = match tail.find('?') {
        Some(q) => tail.split_at(q),
        None => (tail, ""),
    };
    out.push_str(path);
    if let Some(query) = query.strip_prefix('?') {
        let (query, fragment) = match query.find('#') {
            Some(f) => query.split_at(f),
            None => (query, ""),
        };
        out.push('?');
        let pairs = query.split('&').map(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            if key.to_ascii_lowercase().contains("password") {
                format!("{key}=***")
            } else {
                pair.to_owned()
            }
        });
        out.push_str(&pairs.collect::<Vec<_>>().join("&"));
        out.push_str(fragment);
    }
    out
}

/// Removes every password found in `url` from `message`.
pub(crate) fn scrub_password(url: &str, message: &str) -> String {
    let mut secrets = Vec::new();
    if let Some(i) = url.find("://") {
        let rest = &url[i + 3..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@')
            && let Some((_, password)) = authority[..at].split_once(':')
        {
            secrets.push(password.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split(['&', '#']) {
            if let Some((key, value)) = pair.split_once('=')
                && key.to_ascii_lowercase().contains("password")
            {
                secrets.push(value.to_owned());
            }
        }
    }
    let mut out = message.to_owned();
    for secret in secrets {
        for form in [percent_decode(&secret), secret] {
            if !form.is_empty() {
                out = out.replace(&form, "***");
            }
        }
    }
    out
}

/// Decodes `%XX` escapes; anything malformed is kept as is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL to hand to sqlx for a SQLite datastore, and whether it is in
/// memory. Files are created if missing (`mode=rwc`) unless the URL sets a
/// mode itself.
pub(crate) fn sqlite_connect_url(url: &str) -> (String, bool) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:" || query.split('&').any(|p| p == "mode=memory");
    let has_mode = query.split('&').any(|p| p.starts_with("mode="));
    if in_memory || has_mode {
        (url.to_owned(), in_memory)
    } else if url.contains('?') {
        (format!("{url}&mode=rwc"), false)
    } else {
        (format!("{url}?mode=rwc"), false)
    }
}

/// The file of a SQLite URL; `None` for an in-memory database.
pub(crate) fn sqlite_file_path(url: &str) -> Option<std::path::PathBuf> {
    let (connect, in_memory) = sqlite_connect_url(url);
    if in_memory {
        return None;
    }
    let rest = connect
        .strip_prefix("sqlite://")
        .or_else(|| connect.strip_prefix("sqlite:"))?;
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    Some(std::path::PathBuf::from(path))
}

/// Whether `e` says the SQLite file is not a database or is corrupt
/// (`SQLITE_NOTADB`, `SQLITE_CORRUPT`).
pub(crate) fn is_sqlite_not_a_database(e: &sqlx::Error) -> bool {
    const SQLITE_CORRUPT: i64 = 11;
    const SQLITE_NOTADB: i64 = 26;
    match e {
        sqlx::Error::Database(db) => {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            matches!(primary, Some(SQLITE_CORRUPT | SQLITE_NOTADB))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://admin:s3cret@db.example:5432/td?sslmode=require"),
            "postgres://admin:***@db.example:5432/td?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://admin@db/td?password=s3cret&sslmode=disable"),
            "postgres://admin@db/td?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://u:p%40ss@[::1]:5432"),
            "postgresql://u:***@[::1]:5432"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/td@x/datastore.db"),
            "sqlite:///var/lib/td@x/datastore.db"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn scrubs_passwords_from_messages() {
        let url = "postgres://u:p%40ss@host/db?password=other";
        assert_eq!(
            scrub_password(url, "bad p@ss, bad p%40ss, bad other"),
            "bad ***, bad ***, bad ***"
        );
    }

    #[test]
    fn sqlite_urls_create_files() {
        assert_eq!(
            sqlite_connect_url("sqlite:///a/b.db"),
            ("sqlite:///a/b.db?mode=rwc".to_owned(), false)
        );
        assert_eq!(
            sqlite_connect_url("sqlite://b.db?cache=private"),
            ("sqlite://b.db?cache=private&mode=rwc".to_owned(), false)
        );
        assert_eq!(
            sqlite_connect_url("sqlite://b.db?mode=ro"),
            ("sqlite://b.db?mode=ro".to_owned(), false)
        );
        assert_eq!(
            sqlite_connect_url("sqlite::memory:"),
            ("sqlite::memory:".to_owned(), true)
        );
    }

    #[test]
    fn backends_from_urls() {
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("SQLITE:///x"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/db"), None);
    }
}
