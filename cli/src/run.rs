//! Running what the user typed: statements, subscriptions and meta commands, with Ctrl-C
//! cancelling the one in progress.

use std::io::Write;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use quilldb_flight::EventKind;

use crate::args::Format;
use crate::conn::Connection;
use crate::error::{Error, Result};
use crate::render;
use crate::split::{self, Item, Kind};

/// What comes after an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next one.
    Continue,
    /// `\q`: leave.
    Quit,
}

/// The session's state: the connection and the display settings.
#[derive(Debug)]
pub struct Session {
    /// The connection.
    pub conn: Connection,
    /// How results print.
    pub format: Format,
    /// Whether the elapsed time prints after a result.
    pub timing: bool,
    /// The namespace of the last successful `USE` / `\use`.
    pub namespace: Option<String>,
    /// Set when a statement may have changed the catalog (completion reloads it).
    pub catalog_changed: bool,
}

/// The meta commands and what they do, for `\help` and completion.
pub const META: &[(&str, &str)] = &[
    ("\\dn", "list namespaces"),
    ("\\dt", "[ns]  list tables, with their type"),
    ("\\d", "ns.table  describe a table"),
    ("\\use", "ns  make ns the default namespace"),
    (
        "\\subscribe",
        "SQL  subscribe and print changes until Ctrl-C",
    ),
    ("\\live", "open subscriptions (system.live_queries)"),
    ("\\kill", "live_id  end a subscription"),
    ("\\jobs", "recent jobs (system.jobs)"),
    ("\\session", "user, role, namespace and server"),
    ("\\timing", "[on|off]  show the elapsed time"),
    ("\\format", "table|csv|json  how results print"),
    ("\\clear", "clear the screen"),
    ("\\help", "this list"),
    ("\\q", "quit"),
];

/// Waits for Ctrl-C (SIGINT). Listening replaces the default action, so the shell survives it.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Session {
    /// Runs one item, printing its result to `out`.
    pub async fn run(&mut self, item: &Item, out: &mut dyn Write) -> Result<Flow> {
        match item {
            Item::Sql(sql) if first_word(sql).eq_ignore_ascii_case("SUBSCRIBE") => {
                self.subscribe(sql, out).await?;
            }
            Item::Sql(sql) => self.statement(sql, out).await?,
            Item::Meta(line) => return self.meta(line, out).await,
        }
        Ok(Flow::Continue)
    }

    /// Runs a statement and prints its result; Ctrl-C cancels it on the server.
    pub async fn statement(&mut self, sql: &str, out: &mut dyn Write) -> Result<()> {
        let start = Instant::now();
        let info = tokio::select! {
            r = self.conn.plan(sql) => r?,
            () = interrupted() => return Err(Error::Cancelled),
        };
        let mut fetcher = self.conn.clone();
        let (schema, batches) = tokio::select! {
            r = fetcher.fetch(&info) => r?,
            () = interrupted() => {
                // Best effort: the server also stops when the dropped stream closes.
                let _ = self.conn.cancel(&info).await;
                return Err(Error::Cancelled);
            }
        };
        let elapsed = self.timing.then(|| start.elapsed());
        render::result(out, self.format, &schema, &batches, elapsed)?;
        out.flush()?;
        self.after(sql);
        Ok(())
    }

    /// Notes what a successful statement changed: the namespace, the catalog.
    fn after(&mut self, sql: &str) {
        let words: Vec<&str> = split::tokens(sql)
            .into_iter()
            .filter(|(k, _, _)| *k == Kind::Word || *k == Kind::Quoted)
            .map(|(_, s, e)| &sql[s..e])
            .take(3)
            .collect();
        match words.as_slice() {
            [u, ns, ..] if u.eq_ignore_ascii_case("USE") => {
                self.namespace = Some(ns.trim_matches('"').to_string());
            }
            [s, n, ns] if s.eq_ignore_ascii_case("SET") && n.eq_ignore_ascii_case("NAMESPACE") => {
                self.namespace = Some(ns.trim_matches('"').to_string());
            }
            [w, ..]
                if ["CREATE", "DROP", "ALTER"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                self.catalog_changed = true;
            }
            _ => {}
        }
    }

    /// Runs a statement made by a meta command.
    async fn internal(&mut self, sql: &str, out: &mut dyn Write) -> Result<Flow> {
        self.statement(sql, out).await?;
        Ok(Flow::Continue)
    }

    /// Runs a meta command line.
    pub async fn meta(&mut self, line: &str, out: &mut dyn Write) -> Result<Flow> {
        let line = line.trim().trim_end_matches(';').trim();
        let (cmd, arg) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim()),
            None => (line, ""),
        };
        let need = |what: &str| Error::Local(format!("{cmd} needs {what}"));
        match cmd {
            "\\q" | "\\quit" => return Ok(Flow::Quit),
            "\\dn" => return self.internal("SHOW NAMESPACES", out).await,
            "\\dt" if arg.is_empty() => return self.internal("SHOW TABLES", out).await,
            "\\dt" => return self.internal(&format!("SHOW TABLES IN {arg}"), out).await,
            "\\d" if arg.is_empty() => return Err(need("a table: \\d ns.table")),
            "\\d" => return self.internal(&format!("DESCRIBE TABLE {arg}"), out).await,
            "\\use" if arg.is_empty() => return Err(need("a namespace: \\use ns")),
            "\\use" => return self.internal(&format!("USE {arg}"), out).await,
            "\\live" => {
                return self
                    .internal(
                        "SELECT live_id, user_id, namespace, table_name, query, created_at, \
                         last_seq, rows_sent FROM system.live_queries ORDER BY created_at",
                        out,
                    )
                    .await;
            }
            "\\kill" if arg.is_empty() => return Err(need("a live_id: \\kill LQ-...")),
            "\\kill" => {
                let id = arg.trim_matches('\'').replace('\'', "''");
                return self.internal(&format!("KILL LIVE QUERY '{id}'"), out).await;
            }
            "\\jobs" => {
                return self
                    .internal(
                        "SELECT job_id, job_type, status, namespace, table_name, rows, message, \
                         created_at, finished_at FROM system.jobs ORDER BY created_at DESC \
                         LIMIT 20",
                        out,
                    )
                    .await;
            }
            "\\subscribe" if arg.is_empty() => return Err(need("a query: \\subscribe ns.t")),
            "\\subscribe" => {
                let sql = if first_word(arg).eq_ignore_ascii_case("SUBSCRIBE") {
                    arg.to_string()
                } else {
                    format!("SUBSCRIBE TO {arg}")
                };
                self.subscribe(&sql, out).await?;
            }
            "\\session" => self.session(out).await?,
            "\\timing" => {
                self.timing = match arg {
                    "" => !self.timing,
                    "on" => true,
                    "off" => false,
                    _ => return Err(need("on or off")),
                };
                let state = if self.timing { "on" } else { "off" };
                writeln!(out, "timing is {state}")?;
            }
            "\\format" if arg.is_empty() => writeln!(out, "format is {:?}", self.format)?,
            "\\format" => {
                self.format = arg.parse()?;
                writeln!(out, "format is {:?}", self.format)?;
            }
            "\\clear" => write!(out, "\x1b[2J\x1b[H")?,
            "\\help" | "\\?" => {
                for (name, what) in META {
                    writeln!(out, "  {name:<12} {what}")?;
                }
                writeln!(
                    out,
                    "  SQL ends with ;   Ctrl-C cancels the running statement   Ctrl-D quits"
                )?;
            }
            other => {
                return Err(Error::Local(format!(
                    "unknown command {other}: \\help lists them"
                )));
            }
        }
        out.flush()?;
        Ok(Flow::Continue)
    }

    /// `\session`: who and where.
    async fn session(&mut self, out: &mut dyn Write) -> Result<()> {
        let (_, batches) = self
            .conn
            .query("SELECT current_user() AS user_name, current_role() AS role_name")
            .await?;
        let text = |i: usize| -> String {
            batches
                .first()
                .filter(|b| b.num_rows() > 0)
                .and_then(|b| arrow::util::display::array_value_to_string(b.column(i), 0).ok())
                .unwrap_or_default()
        };
        let version = self.conn.server_version().await?;
        writeln!(out, "user       {}", text(0))?;
        writeln!(out, "role       {}", text(1))?;
        let ns = self.namespace.as_deref().unwrap_or("(none)");
        writeln!(out, "namespace  {ns}")?;
        writeln!(out, "server     {version} at {}", self.conn.url)?;
        Ok(())
    }

    /// Prints a subscription: the snapshot as a table, then each change as it arrives, until
    /// Ctrl-C or the server ends it.
    pub async fn subscribe(&mut self, sql: &str, out: &mut dyn Write) -> Result<()> {
        let mut live = tokio::select! {
            r = self.conn.subscribe(sql) => r?,
            () = interrupted() => return Err(Error::Cancelled),
        };
        let mut snapshot: Vec<RecordBatch> = Vec::new();
        let started = Instant::now();
        // Heartbeats come every 15 s by default; a day of silence means the stream is gone.
        let wait = Duration::from_secs(24 * 3600);
        loop {
            let next = tokio::select! {
                r = live.next_within(wait) => r?,
                () = interrupted() => {
                    writeln!(out, "subscription ended")?;
                    out.flush()?;
                    return Ok(());
                }
            };
            let Some((event, batch)) = next else {
                writeln!(out, "the server ended the subscription")?;
                return Ok(());
            };
            match event.kind() {
                EventKind::Ack => {}
                EventKind::Initial => snapshot.extend(batch),
                EventKind::InitialDone => {
                    let schema = match live.schema_within(wait).await? {
                        Some(s) => s,
                        None => return Ok(()),
                    };
                    let elapsed = self.timing.then(|| started.elapsed());
                    render::result(out, Format::Table, &schema, &snapshot, elapsed)?;
                    writeln!(
                        out,
                        "live: {} (last_seq {}); changes follow, Ctrl-C stops",
                        event.subscription_id, event.last_seq
                    )?;
                    snapshot.clear();
                }
                EventKind::Change => {
                    if let Some(b) = batch {
                        let now = chrono::Local::now().format("%H:%M:%S%.3f").to_string();
                        render::changes(out, &b, &now)?;
                    }
                }
                EventKind::Heartbeat => {}
                EventKind::Closed => {
                    writeln!(out, "subscription closed: {} {}", event.code, event.message)?;
                    return Ok(());
                }
                EventKind::Error => {
                    return Err(Error::Local(format!(
                        "subscription error {}: {}",
                        event.code, event.message
                    )));
                }
            }
            out.flush()?;
        }
    }
}

/// The first word of SQL text, comments skipped.
fn first_word(sql: &str) -> &str {
    split::tokens(sql)
        .into_iter()
        .find(|(k, s, e)| *k != Kind::Comment && !sql[*s..*e].trim().is_empty())
        .map_or("", |(_, s, e)| &sql[s..e])
}

/// `text` with the string after each PASSWORD keyword replaced by `'***'`, for the history.
pub fn redact(text: &str) -> String {
    let toks = split::tokens(text);
    let mut out = String::with_capacity(text.len());
    let mut after_password = false;
    for (kind, s, e) in toks {
        let t = &text[s..e];
        match kind {
            Kind::Str if after_password => {
                out.push_str("'***'");
                after_password = false;
                continue;
            }
            Kind::Word => after_password = t.eq_ignore_ascii_case("PASSWORD"),
            Kind::Comment | Kind::Other if t.trim().is_empty() => {}
            _ => after_password = false,
        }
        out.push_str(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_history() {
        assert_eq!(
            redact("CREATE USER a WITH PASSWORD 's3;cr''et' ROLE dba;"),
            "CREATE USER a WITH PASSWORD '***' ROLE dba;"
        );
        assert_eq!(
            redact("alter user a set password\n  'x';"),
            "alter user a set password\n  '***';"
        );
        assert_eq!(redact("SELECT 'password'"), "SELECT 'password'");
    }

    #[test]
    fn the_first_word_skips_comments() {
        assert_eq!(first_word("-- hi\n /* x */ subscribe to t"), "subscribe");
    }
}
