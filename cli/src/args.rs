//! The command line of `quilldb sql` and the stored credentials.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::error::{Error, Result};

/// The default server: the local one on its default Flight port.
pub const DEFAULT_URL: &str = "grpc://127.0.0.1:50051";

/// `quilldb sql`: the SQL shell.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// The server's Flight SQL address.
    #[arg(long, env = "QUILLDB_URL")]
    pub url: Option<String>,
    /// The user to sign in as (default: root, or the stored credentials' user).
    #[arg(short = 'u', long, env = "QUILLDB_USER")]
    pub user: Option<String>,
    /// The password; `-p` alone asks for it (default: QUILLDB_PASSWORD, the stored credentials,
    /// or the empty password root has from loopback).
    #[arg(short = 'p', long, num_args = 0..=1, default_missing_value = "\u{0}prompt")]
    pub password: Option<String>,
    /// Run this SQL (one or more statements) and exit.
    #[arg(short = 'c', long = "command", conflicts_with = "file")]
    pub command: Option<String>,
    /// Run the statements of this file and exit.
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
    /// How results are printed.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// With -c/-f: run the next statements after an error (the exit status is still 1).
    #[arg(long)]
    pub continue_on_error: bool,
    /// The history file (default ~/.quilldb_history).
    #[arg(long, env = "QUILLDB_HISTORY")]
    pub history: Option<PathBuf>,
    /// PEM CA certificates to trust for a grpc+tls:// server (default: the system's roots).
    #[arg(long, env = "QUILLDB_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a server that requires one (with --tls-key).
    #[arg(long, env = "QUILLDB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "QUILLDB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a row count and the elapsed time.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of row objects per statement.
    Json,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        <Self as ValueEnum>::from_str(s, true)
            .map_err(|_| Error::Local(format!("unknown format {s}: use table, csv or json")))
    }
}

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct Login {
    /// The server's URL.
    pub url: String,
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
    /// TLS files: the CA to trust, the client certificate and its key.
    pub tls: TlsFiles,
}

/// TLS files of a connection.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM CA certificates to trust (none: the system's roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Values read from `~/.quilldb/credentials`: `url = ...`, `user = ...`, `password = ...`
/// lines (`#` starts a comment). The file must not be readable by others (mode 0600).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `url`.
    pub url: Option<String>,
    /// `user`.
    pub user: Option<String>,
    /// `password`.
    pub password: Option<String>,
}

impl Stored {
    /// Reads `path`; a missing file is empty; a file others can read is refused.
    pub fn read(path: &Path) -> Result<Self> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::Local(format!("{}: {e}", path.display()))),
        };
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::Local(format!(
                "{} is readable by other users: chmod 600 it",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Local(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Local(format!("{}: {e}", path.display())))
    }

    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut out = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected key = value", n + 1))?;
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "url" => out.url = Some(v),
                "user" => out.user = Some(v),
                "password" => out.password = Some(v),
                other => return Err(format!("line {}: unknown key {other}", n + 1)),
            }
        }
        Ok(out)
    }
}

/// The user's home directory.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

impl SqlArgs {
    /// Where to connect and as whom: flags and environment first, then the stored credentials,
    /// then root on the local server; `-p` alone, or a non-root user without a password on a
    /// terminal, asks for the password.
    pub fn login(&self) -> Result<Login> {
        let stored = match home() {
            Some(h) => Stored::read(&h.join(".quilldb").join("credentials"))?,
            None => Stored::default(),
        };
        let url = self
            .url
            .clone()
            .or(stored.url)
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let same_user = self.user.is_none() || self.user == stored.user;
        let user = self
            .user
            .clone()
            .or(stored.user)
            .unwrap_or_else(|| "root".to_string());
        let password = match self.password.as_deref() {
            Some("\u{0}prompt") => prompt_password(&user)?,
            Some(p) => p.to_string(),
            None => match std::env::var("QUILLDB_PASSWORD") {
                Ok(p) => p,
                Err(_) => match stored.password.filter(|_| same_user) {
                    Some(p) => p,
                    None if user != "root"
                        && std::io::IsTerminal::is_terminal(&std::io::stdin()) =>
                    {
                        prompt_password(&user)?
                    }
                    None => String::new(),
                },
            },
        };
        Ok(Login {
            url,
            user,
            password,
            tls: TlsFiles {
                ca: self.tls_ca.clone(),
                identity: self.tls_cert.clone().zip(self.tls_key.clone()),
            },
        })
    }
}

/// Reads a password from the terminal without echoing it.
fn prompt_password(user: &str) -> Result<String> {
    let mut editor = rustyline::Editor::<Masked, rustyline::history::DefaultHistory>::new()
        .map_err(|e| Error::Local(format!("the terminal: {e}")))?;
    editor.set_helper(Some(Masked));
    editor
        .readline(&format!("password for {user}: "))
        .map_err(|e| Error::Local(format!("reading the password: {e}")))
}

/// Shows every typed character as `*`.
struct Masked;

impl rustyline::highlight::Highlighter for Masked {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> std::borrow::Cow<'l, str> {
        "*".repeat(line.chars().count()).into()
    }
    fn highlight_char(
        &self,
        _line: &str,
        _pos: usize,
        _kind: rustyline::highlight::CmdKind,
    ) -> bool {
        true
    }
}
impl rustyline::completion::Completer for Masked {
    type Candidate = String;
}
impl rustyline::hint::Hinter for Masked {
    type Hint = String;
}
impl rustyline::validate::Validator for Masked {}
impl rustyline::Helper for Masked {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_keys_and_refuse_unknown_ones() {
        let s = Stored::parse("# mine\nurl = grpc://h:1\nuser = \"alice\"\npassword=pw\n").unwrap();
        assert_eq!(s.url.as_deref(), Some("grpc://h:1"));
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert!(Stored::parse("token = x").is_err());
    }

    #[test]
    fn credentials_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("quilldb-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials");
        std::fs::write(&path, "user = bob\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Stored::read(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Stored::read(&path).unwrap().user.as_deref(), Some("bob"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
