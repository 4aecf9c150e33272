//! `quilldb sql`: QuillDB's SQL shell, a Flight SQL client with no code of the server.
//!
//! ```text
//!  -c SQL / -f file / stdin ──► split (statements at `;`, meta `\` lines)
//!  interactive (rustyline) ───┘        │
//!                                      ▼
//!                  run::Session ── statements: GetFlightInfo + DoGet ──► render (table|csv|json)
//!                       │          Ctrl-C: CancelFlightInfo
//!                       ├───────── SUBSCRIBE / \subscribe: DoExchange (quilldb_flight::client)
//!                       └───────── meta commands: SHOW / DESCRIBE / system tables / GetSqlInfo
//! ```

/// The command line and stored credentials.
pub mod args;
/// The connection: sign-in, statements, cancel, subscriptions, the catalog.
pub mod conn;
/// The shell's errors.
pub mod error;
/// Printing results and changes.
pub mod render;
/// Running statements, subscriptions and meta commands.
pub mod run;
/// The interactive editor.
pub mod shell;
/// Statement splitting and tokens.
pub mod split;

use std::io::{IsTerminal, Read};

pub use args::{Format, SqlArgs};

use error::Error;
use run::{Flow, Session};
use split::Item;

/// Exit status when a statement failed.
const FAILED: i32 = 1;
/// Exit status when the shell could not start (connection, credentials, usage).
const UNUSABLE: i32 = 2;

/// Runs `quilldb sql`; answers the process's exit status.
pub fn main(args: SqlArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quilldb sql: starting the runtime: {e}");
            return UNUSABLE;
        }
    };
    let login = match args.login() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("quilldb sql: {e}");
            return UNUSABLE;
        }
    };
    let conn = match runtime.block_on(conn::Connection::open(&login)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quilldb sql: {}", shell::one_line(&e.to_string()));
            return UNUSABLE;
        }
    };
    let session = Session {
        conn,
        format: args.format,
        timing: true,
        namespace: None,
        catalog_changed: false,
    };
    let script = if let Some(sql) = &args.command {
        Some(sql.clone())
    } else if let Some(path) = &args.file {
        match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("quilldb sql: {}: {e}", path.display());
                return UNUSABLE;
            }
        }
    } else if !std::io::stdin().is_terminal() {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("quilldb sql: reading stdin: {e}");
            return UNUSABLE;
        }
        Some(text)
    } else {
        None
    };
    match script {
        Some(text) => run_script(&runtime, session, &text, args.continue_on_error),
        None => match shell::interactive(&runtime, session, args.history.clone()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("quilldb sql: {e}");
                UNUSABLE
            }
        },
    }
}

/// Runs every statement of `text`; stops at the first error unless `keep_going`. Answers the
/// exit status: 0, or 1 when a statement failed.
fn run_script(
    runtime: &tokio::runtime::Runtime,
    mut session: Session,
    text: &str,
    keep_going: bool,
) -> i32 {
    let (mut items, rest) = split::split(text);
    if !rest.is_empty() {
        items.push(Item::Sql(rest));
    }
    let mut out = std::io::stdout();
    let mut status = 0;
    for (n, item) in items.iter().enumerate() {
        match runtime.block_on(session.run(item, &mut out)) {
            Ok(Flow::Quit) => break,
            Ok(Flow::Continue) => {}
            Err(e) => {
                status = FAILED;
                eprintln!(
                    "ERROR {} (statement {})",
                    shell::one_line(&e.to_string()),
                    n + 1
                );
                if !keep_going || matches!(e, Error::Cancelled) {
                    break;
                }
            }
        }
    }
    status
}
