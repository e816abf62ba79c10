//! `type = "postgres"` sources and sinks: connection settings (every string may hold secret
//! references, resolved only when connecting), what to read, and how to write.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Connection settings shared by the PostgreSQL source and sink (references unresolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgConnectionConfig {
    /// `postgres://user@host:port/db`; a password in it must be a reference.
    pub url: Option<String>,
    /// Host name (overrides the URL's).
    pub host: Option<String>,
    /// Port (overrides the URL's).
    pub port: Option<u16>,
    /// Database (overrides the URL's).
    pub dbname: Option<String>,
    /// User (overrides the URL's).
    pub user: Option<String>,
    /// Password: a reference such as `${env:PGPASSWORD}`.
    pub password: Option<String>,
    /// `verify-full` (default), `require` or `disable`; the last two need
    /// `[danger] allow_insecure_db = true`.
    pub sslmode: String,
    /// PEM file of the CA certificates to trust (default: the system roots).
    pub ca_file: Option<String>,
    /// PEM client certificate chain, for certificate authentication.
    pub client_cert: Option<String>,
    /// PEM private key of the client certificate.
    pub client_key: Option<String>,
    /// Connect timeout in seconds (default 10).
    pub connect_timeout: Option<u64>,
}

/// The `sslmode` values.
pub const SSL_MODES: &[&str] = &["verify-full", "require", "disable"];

fn default_sslmode() -> String {
    "verify-full".into()
}

fn default_partitions() -> usize {
    1
}

/// Declares a config struct with the connection keys followed by its own keys, so both kinds
/// reject unknown keys (`serde(flatten)` cannot be combined with `deny_unknown_fields`).
macro_rules! with_connection {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// `postgres://user@host:port/db`; a password in it must be a reference.
            #[serde(default)]
            pub url: Option<String>,
            /// Host name (overrides the URL's).
            #[serde(default)]
            pub host: Option<String>,
            /// Port (overrides the URL's).
            #[serde(default)]
            pub port: Option<u16>,
            /// Database (overrides the URL's).
            #[serde(default)]
            pub dbname: Option<String>,
            /// User (overrides the URL's).
            #[serde(default)]
            pub user: Option<String>,
            /// Password: a reference such as `${env:PGPASSWORD}`.
            #[serde(default)]
            pub password: Option<String>,
            /// `verify-full` (default), `require` or `disable`.
            #[serde(default = "default_sslmode")]
            pub sslmode: String,
            /// PEM file of the CA certificates to trust (default: the system roots).
            #[serde(default)]
            pub ca_file: Option<String>,
            /// PEM client certificate chain, for certificate authentication.
            #[serde(default)]
            pub client_cert: Option<String>,
            /// PEM private key of the client certificate.
            #[serde(default)]
            pub client_key: Option<String>,
            /// Connect timeout in seconds (default 10).
            #[serde(default)]
            pub connect_timeout: Option<u64>,
            $($(#[$fm])* pub $field: $ty,)*
        }

        impl $name {
            /// The connection settings.
            pub fn connection(&self) -> PgConnectionConfig {
                PgConnectionConfig {
                    url: self.url.clone(),
                    host: self.host.clone(),
                    port: self.port,
                    dbname: self.dbname.clone(),
                    user: self.user.clone(),
                    password: self.password.clone(),
                    sslmode: self.sslmode.clone(),
                    ca_file: self.ca_file.clone(),
                    client_cert: self.client_cert.clone(),
                    client_key: self.client_key.clone(),
                    connect_timeout: self.connect_timeout,
                }
            }
        }
    };
}

with_connection! {
    /// `type = "postgres"` source options: a `table` or a `query`, streamed with binary COPY.
    pub struct PostgresSource {
        /// Table to read (`name` or `schema.name`).
        #[serde(default)]
        pub table: Option<String>,
        /// Query to read (instead of `table`).
        #[serde(default)]
        pub query: Option<String>,
        /// Columns holding personal data (see the CSV source).
        #[serde(default)]
        pub pii: Vec<String>,
        /// Integer column to split parallel reads on (needed when `partitions > 1`).
        #[serde(default)]
        pub partition_column: Option<String>,
        /// Parallel readers, each on one key range, all in one snapshot (default 1).
        #[serde(default = "default_partitions")]
        pub partitions: usize,
    }
}

/// How a PostgreSQL sink writes its table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgWriteMode {
    /// Add the rows (default).
    #[default]
    Append,
    /// Replace the table's contents.
    Overwrite,
    /// Insert, or update the rows whose `key` already exists.
    Upsert,
}

impl PgWriteMode {
    /// The name as written in config.
    pub fn name(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Overwrite => "overwrite",
            Self::Upsert => "upsert",
        }
    }
}

with_connection! {
    /// `type = "postgres"` sink options.
    pub struct PostgresSink {
        /// Target table (`name` or `schema.name`).
        pub table: String,
        /// `append` (default), `overwrite` or `upsert`.
        #[serde(default)]
        pub mode: PgWriteMode,
        /// Key columns for `upsert` (a unique index or primary key on them).
        #[serde(default)]
        pub key: Vec<String>,
        /// Create the table from the input's schema when it does not exist.
        #[serde(default)]
        pub create_table: bool,
        /// Column types used by `create_table` instead of the ones derived from Arrow, e.g.
        /// `{ email = "bytea" }` for ciphertexts.
        #[serde(default)]
        pub column_types: BTreeMap<String, String>,
    }
}

/// A table name split into optional schema and name, as written (`public.customers`).
pub fn split_table(name: &str) -> Option<(Option<&str>, &str)> {
    let name = name.trim();
    let parts: Vec<&str> = name.split('.').collect();
    let ok = |s: &str| !s.is_empty() && !s.contains(['"', '\0']);
    match parts.as_slice() {
        [t] if ok(t) => Some((None, t)),
        [s, t] if ok(s) && ok(t) => Some((Some(s), t)),
        _ => None,
    }
}

/// Whether `t` is a plain SQL type name custos puts into `CREATE TABLE` (`text`,
/// `varchar(64)`, `numeric(12,2)`, `text[]`, `double precision`).
pub fn valid_sql_type(t: &str) -> bool {
    let t = t.trim();
    let base = t.strip_suffix("[]").unwrap_or(t);
    let (name, args) = match base.split_once('(') {
        Some((n, rest)) => match rest.strip_suffix(')') {
            Some(a) => (n.trim_end(), Some(a)),
            None => return false,
        },
        None => (base, None),
    };
    let name_ok = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ');
    let args_ok = args.is_none_or(|a| {
        a.split(',')
            .all(|n| !n.trim().is_empty() && n.trim().chars().all(|c| c.is_ascii_digit()))
    });
    name_ok && args_ok
}

/// Checks a source's own keys (not the shared connection keys): pure, every problem as
/// `(key suffix, message)`.
pub fn check_source(s: &PostgresSource) -> Vec<(String, String)> {
    let mut out = check_connection(&s.connection());
    match (&s.table, &s.query) {
        (Some(_), Some(_)) => out.push((
            "query".into(),
            "set either `table` or `query`, not both".into(),
        )),
        (None, None) => out.push((
            String::new(),
            "a postgres source needs a `table` or a `query`".into(),
        )),
        (Some(t), None) if split_table(t).is_none() => out.push((
            "table".into(),
            "`table` must be `name` or `schema.name` without quotes".into(),
        )),
        (None, Some(q)) if q.trim().is_empty() => {
            out.push(("query".into(), "`query` must not be empty".into()))
        }
        _ => {}
    }
    if s.partitions == 0 {
        out.push(("partitions".into(), "must be at least 1".into()));
    }
    if s.partitions > 1 && s.partition_column.is_none() {
        out.push((
            "partition_column".into(),
            "`partitions` above 1 needs a `partition_column` (an integer column) to split on"
                .into(),
        ));
    }
    if s.partitions > 64 {
        out.push((
            "partitions".into(),
            "at most 64 parallel readers (each is a connection)".into(),
        ));
    }
    out
}

/// Checks a sink's keys: pure, every problem as `(key suffix, message)`.
pub fn check_sink(s: &PostgresSink) -> Vec<(String, String)> {
    let mut out = check_connection(&s.connection());
    if split_table(&s.table).is_none() {
        out.push((
            "table".into(),
            "`table` must be `name` or `schema.name` without quotes".into(),
        ));
    }
    match s.mode {
        PgWriteMode::Upsert if s.key.is_empty() => out.push((
            "key".into(),
            "mode \"upsert\" needs `key`: the columns of a unique index or primary key".into(),
        )),
        PgWriteMode::Append | PgWriteMode::Overwrite if !s.key.is_empty() => out.push((
            "key".into(),
            format!(
                "`key` is only used by mode \"upsert\", not \"{}\"",
                s.mode.name()
            ),
        )),
        _ => {}
    }
    for (c, t) in &s.column_types {
        if !valid_sql_type(t) {
            out.push((
                format!("column_types.{c}"),
                format!("\"{t}\" is not a plain SQL type name (e.g. text, bytea, varchar(64), numeric(12,2))"),
            ));
        }
    }
    if !s.column_types.is_empty() && !s.create_table {
        out.push((
            "column_types".into(),
            "`column_types` only applies with `create_table = true`".into(),
        ));
    }
    out
}

fn check_connection(c: &PgConnectionConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if c.url.is_none() && c.host.is_none() {
        out.push((
            String::new(),
            "a postgres connection needs `url` or `host`".into(),
        ));
    }
    if !SSL_MODES.contains(&c.sslmode.as_str()) {
        out.push((
            "sslmode".into(),
            format!(
                "unknown sslmode \"{}\"; expected verify-full, require or disable",
                c.sslmode
            ),
        ));
    }
    if let Some(u) = &c.url {
        if !u.starts_with("postgres://") && !u.starts_with("postgresql://") {
            out.push((
                "url".into(),
                "`url` must start with postgres:// or postgresql://".into(),
            ));
        }
        if u.contains("sslmode=") {
            out.push((
                "url".into(),
                "set TLS with the `sslmode` key, not in the URL".into(),
            ));
        }
    }
    if c.client_cert.is_some() != c.client_key.is_some() {
        out.push((
            "client_key".into(),
            "`client_cert` and `client_key` go together".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_and_sql_types() {
        assert_eq!(split_table("t"), Some((None, "t")));
        assert_eq!(split_table("s.t"), Some((Some("s"), "t")));
        assert_eq!(split_table("a.b.c"), None);
        assert_eq!(split_table("\"x\""), None);
        for ok in [
            "text",
            "bytea",
            "varchar(64)",
            "numeric(12, 2)",
            "text[]",
            "double precision",
        ] {
            assert!(valid_sql_type(ok), "{ok}");
        }
        for bad in ["text; drop table x", "int)", "(x)", "a(b)", ""] {
            assert!(!valid_sql_type(bad), "{bad}");
        }
    }
}
