//! The limits every statement is held to, read from the configuration (`limits.*`).

use crate::config::LimitsConfig;
use crate::error::{Error, Result};

/// Configured limits enforced on statements.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Size and nesting of SQL text.
    pub text: TextLimits,
    /// Memory one query may hold, in bytes.
    pub max_query_memory: usize,
    /// Most rows in one INSERT or ingest call.
    pub max_rows_per_insert: usize,
    /// Larger ingest calls into tables without a primary key go straight to cold segments
    /// (`storage.direct_ingest_rows`; 0: never).
    pub direct_ingest_rows: usize,
    /// Time limits of statements.
    timeouts: LimitsConfig,
}

impl Limits {
    /// The limits of `config`.
    pub fn new(config: &LimitsConfig, direct_ingest_rows: usize) -> Self {
        Self {
            text: TextLimits {
                max_bytes: config.max_sql_bytes,
                max_depth: config.max_expression_depth.max(1),
            },
            max_query_memory: config.max_query_memory_mb << 20,
            max_rows_per_insert: config.max_rows_per_insert,
            direct_ingest_rows,
            timeouts: config.clone(),
        }
    }

    /// How long a statement of `role` may run.
    pub fn query_timeout(&self, role: crate::session::Role) -> std::time::Duration {
        self.timeouts.query_timeout(role)
    }
}

/// Limits on statement text, checked before anything is built from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimits {
    /// Largest SQL text in bytes (`limits.max_sql_bytes`).
    pub max_bytes: usize,
    /// Deepest nesting of operators, brackets and CASE (`limits.max_expression_depth`); see
    /// `sql::depth`.
    pub max_depth: usize,
}

impl TextLimits {
    /// sqlparser's own recursion limit: a backstop behind the token count, which it can only
    /// reach through shapes that recurse more than once per counted token (a subquery recurses
    /// through the query, the select and the expression).
    pub fn parser_recursion(&self) -> usize {
        self.max_depth.saturating_mul(4).saturating_add(64)
    }

    /// Refuses text longer than `max_bytes`.
    pub fn check_size(&self, sql: &str) -> Result<()> {
        if sql.len() > self.max_bytes {
            return Err(Error::ResourceExhausted(format!(
                "the SQL text is {} bytes; the limit is {} (limits.max_sql_bytes)",
                sql.len(),
                self.max_bytes
            )));
        }
        Ok(())
    }
}
