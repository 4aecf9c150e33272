//! The interactive shell: line editing with history, multi-line statements, completion and
//! highlighting (rustyline), and the loop that runs what is typed.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};

use crate::conn::TableInfo;
use crate::error::Result;
use crate::run::{Flow, META, Session, redact};
use crate::split::{self, Item, Kind};

/// Words completed and coloured as SQL keywords.
pub const KEYWORDS: &[&str] = &[
    "ALL",
    "ALTER",
    "AND",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BIGINT",
    "BOOLEAN",
    "BY",
    "CASE",
    "CAST",
    "COMMIT",
    "COUNT",
    "CREATE",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "DOUBLE",
    "DROP",
    "ELSE",
    "END",
    "EXECUTE",
    "EXISTS",
    "EXPLAIN",
    "FALSE",
    "FLUSH",
    "FROM",
    "GRANT",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INSERT",
    "INT",
    "INTEGER",
    "INTO",
    "IS",
    "JOB",
    "JOIN",
    "KEY",
    "KILL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LIVE",
    "MANIFEST",
    "NAMESPACE",
    "NAMESPACES",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "OPTIONS",
    "OR",
    "ORDER",
    "PASSWORD",
    "PRIMARY",
    "QUERY",
    "REVOKE",
    "ROLE",
    "ROLLBACK",
    "SELECT",
    "SET",
    "SHARED",
    "SHOW",
    "STORAGE",
    "STORAGES",
    "STREAM",
    "SUBSCRIBE",
    "TABLE",
    "TABLES",
    "TEXT",
    "THEN",
    "TIMESTAMP",
    "TO",
    "TRUE",
    "UPDATE",
    "USE",
    "USER",
    "USERS",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
];

/// What completion knows of the catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Namespace names.
    pub namespaces: Vec<String>,
    /// Tables with their columns.
    pub tables: Vec<TableInfo>,
    /// The default namespace.
    pub current: Option<String>,
}

/// The editor's helper: completion, highlighting and the end-of-statement check.
pub struct SqlHelper {
    catalog: Arc<Mutex<Catalog>>,
    colour: bool,
}

impl SqlHelper {
    fn candidates(&self, line: &str, word: &str) -> Vec<String> {
        let Ok(cat) = self.catalog.lock() else {
            return Vec::new();
        };
        let starts = |s: &str| s.to_lowercase().starts_with(&word.to_lowercase());
        let mut out = BTreeSet::new();
        if word.starts_with('\\') {
            out.extend(
                META.iter()
                    .map(|(m, _)| m.to_string())
                    .filter(|m| starts(m)),
            );
            return out.into_iter().collect();
        }
        if let Some((prefix, _)) = word.rsplit_once('.') {
            // ns.<table>, or table.<column> / ns.table.<column>
            for t in &cat.tables {
                let qualified = format!("{}.{}", t.namespace, t.name);
                if t.namespace == prefix {
                    out.insert(qualified.clone());
                }
                if qualified == prefix || (t.name == prefix && !prefix.contains('.')) {
                    out.extend(t.columns.iter().map(|c| format!("{prefix}.{c}")));
                }
            }
            return out.into_iter().filter(|c| starts(c)).collect();
        }
        let upper = word.chars().all(|c| !c.is_lowercase());
        for k in KEYWORDS {
            if starts(k) {
                out.insert(if upper {
                    k.to_string()
                } else {
                    k.to_lowercase()
                });
            }
        }
        out.extend(cat.namespaces.iter().filter(|n| starts(n)).cloned());
        let named: Vec<&TableInfo> = cat
            .tables
            .iter()
            .filter(|t| {
                let q = format!("{}.{}", t.namespace, t.name);
                line.contains(&q)
                    || cat.current.as_deref() == Some(&t.namespace) && line.contains(&t.name)
            })
            .collect();
        for t in &cat.tables {
            if cat.current.as_deref() == Some(&t.namespace) && starts(&t.name) {
                out.insert(t.name.clone());
            }
        }
        for t in named {
            out.extend(t.columns.iter().filter(|c| starts(c)).cloned());
        }
        out.into_iter().collect()
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '\\'))
            .map_or(0, |i| {
                i + before[i..].chars().next().map_or(1, char::len_utf8)
            });
        let word = &before[start..];
        let pairs = self
            .candidates(line, word)
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if !self.colour {
            return Cow::Borrowed(line);
        }
        let mut out = String::with_capacity(line.len() + 32);
        for (kind, s, e) in split::tokens(line) {
            let t = &line[s..e];
            let colour = match kind {
                Kind::Word if KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(t)) => "\x1b[1;34m",
                Kind::Str => "\x1b[32m",
                Kind::Comment => "\x1b[90m",
                Kind::Number => "\x1b[35m",
                _ => "",
            };
            if colour.is_empty() {
                out.push_str(t);
            } else {
                out.push_str(colour);
                out.push_str(t);
                out.push_str("\x1b[0m");
            }
        }
        Cow::Owned(out)
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.colour
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Validator for SqlHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if split::complete(ctx.input()) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

impl Helper for SqlHelper {}

/// The history file: `--history`, else `~/.quilldb_history`.
fn history_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| crate::args::home().map(|h| h.join(".quilldb_history")))
}

/// Reloads what completion knows (after a statement that may have changed it).
async fn load_catalog(session: &mut Session, catalog: &Mutex<Catalog>) {
    let namespaces = session.conn.namespaces().await.unwrap_or_default();
    let tables = session.conn.tables().await.unwrap_or_default();
    if let Ok(mut c) = catalog.lock() {
        c.namespaces = namespaces;
        c.tables = tables;
        c.current = session.namespace.clone();
    }
}

/// Runs the interactive shell until `\q` or Ctrl-D.
pub fn interactive(
    runtime: &tokio::runtime::Runtime,
    mut session: Session,
    history: Option<PathBuf>,
) -> Result<()> {
    let catalog = Arc::new(Mutex::new(Catalog::default()));
    let colour = std::env::var_os("NO_COLOR").is_none();
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .max_history_size(10_000)
        .map_err(|e| crate::error::Error::Local(e.to_string()))?
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut editor: Editor<SqlHelper, DefaultHistory> = Editor::with_config(config)
        .map_err(|e| crate::error::Error::Local(format!("the terminal: {e}")))?;
    editor.set_helper(Some(SqlHelper {
        catalog: catalog.clone(),
        colour,
    }));
    let history = history_path(history);
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let version = runtime
        .block_on(session.conn.server_version())
        .unwrap_or_default();
    println!(
        "quilldb sql: connected to {} ({version}) as {}. \\help for help, \\q to quit.",
        session.conn.url, session.conn.user
    );
    runtime.block_on(load_catalog(&mut session, &catalog));
    let mut out = std::io::stdout();
    loop {
        let prompt = match &session.namespace {
            Some(ns) => format!("quilldb:{ns}> "),
            None => "quilldb> ".to_string(),
        };
        let input = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(crate::error::Error::Local(format!("the terminal: {e}"))),
        };
        if input.trim().is_empty() {
            continue;
        }
        let entry = redact(input.trim());
        let _ = editor.add_history_entry(entry);
        if let Some(h) = &history {
            if editor.append_history(h).is_err() {
                let _ = editor.save_history(h);
            }
            restrict(h);
        }
        let (mut items, rest) = split::split(&input);
        if !rest.is_empty() {
            items.push(Item::Sql(rest));
        }
        for item in &items {
            match runtime.block_on(session.run(item, &mut out)) {
                Ok(Flow::Quit) => return Ok(()),
                Ok(Flow::Continue) => {}
                Err(e) => eprintln!("ERROR {}", one_line(&e.to_string())),
            }
        }
        if session.catalog_changed
            || catalog
                .lock()
                .map(|c| c.current != session.namespace)
                .unwrap_or(false)
        {
            session.catalog_changed = false;
            runtime.block_on(load_catalog(&mut session, &catalog));
        }
    }
    Ok(())
}

/// Keeps the history file private: it holds the SQL typed.
fn restrict(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// An error message on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
