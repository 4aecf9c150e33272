//! The naming rules of spec/security.md, in one place.

use datafusion::sql::sqlparser::ast::{Ident, ObjectName};

use crate::error::{Error, Result};

/// Namespaces no user may create.
pub const RESERVED_NAMESPACES: &[&str] = &[
    "system",
    "sys",
    "information_schema",
    "pg_catalog",
    "datafusion",
    "quill",
    "quilldb",
    "root",
    "main",
    "default",
    "sql",
    "admin",
    "internal",
];

/// SQL keywords that are reserved (PostgreSQL's reserved list, plus the DML verbs).
const RESERVED_KEYWORDS: &[&str] = &[
    "all",
    "alter",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "delete",
    "desc",
    "distinct",
    "do",
    "drop",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "insert",
    "intersect",
    "into",
    "join",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "set",
    "some",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// What kind of thing a name names; each has its own length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A namespace: at most 32 characters, not reserved.
    Namespace,
    /// A table.
    Table,
    /// A column.
    Column,
    /// A user.
    User,
    /// A storage.
    Storage,
}

impl NameKind {
    fn max_len(self) -> usize {
        match self {
            Self::Namespace => 32,
            _ => 64,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::Table => "table",
            Self::Column => "column",
            Self::User => "user",
            Self::Storage => "storage",
        }
    }
}

/// Checks a name against the rules; the error names the rule that was broken.
pub fn validate(kind: NameKind, name: &str) -> Result<()> {
    let fail = |rule: String| {
        Err(Error::InvalidName {
            name: name.to_string(),
            rule,
        })
    };
    let noun = kind.noun();
    if name.starts_with('_') {
        return fail(format!(
            "{noun} names starting with '_' are reserved for the system"
        ));
    }
    let mut chars = name.chars();
    match chars.next() {
        None => return fail(format!("a {noun} name cannot be empty")),
        Some(c) if !c.is_ascii_lowercase() => {
            return fail(format!(
                "a {noun} name must start with a lower-case letter a-z"
            ));
        }
        _ => {}
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return fail(format!(
            "a {noun} name may hold only a-z, 0-9 and '_' (pattern [a-z][a-z0-9_]*)"
        ));
    }
    if name.len() > kind.max_len() {
        return fail(format!(
            "a {noun} name is at most {} characters",
            kind.max_len()
        ));
    }
    if RESERVED_KEYWORDS.contains(&name) {
        return fail(format!("{name} is a reserved SQL keyword"));
    }
    if kind == NameKind::Namespace && RESERVED_NAMESPACES.contains(&name) {
        return fail(format!("{name} is a reserved namespace"));
    }
    Ok(())
}

/// An identifier as QuillDB names it: unquoted folds to lower case, quoted is kept.
pub fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The parts of a dotted name, normalized.
pub fn name_parts(name: &ObjectName) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(normalize)
                .ok_or_else(|| Error::InvalidArgument(format!("{name} is not a plain name")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: NameKind, name: &str) -> String {
        match validate(kind, name) {
            Err(Error::InvalidName { rule, .. }) => rule,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn good_names_pass() {
        for n in ["chat", "a1", "user_messages", "x_"] {
            assert!(validate(NameKind::Table, n).is_ok(), "{n}");
        }
    }

    #[test]
    fn each_rule_is_named() {
        assert!(rule(NameKind::Column, "_seq").contains("reserved for the system"));
        assert!(rule(NameKind::Table, "1abc").contains("start with"));
        assert!(rule(NameKind::Table, "Abc").contains("start with"));
        assert!(rule(NameKind::Table, "a-b").contains("pattern"));
        assert!(rule(NameKind::Table, "a/../b").contains("pattern"));
        assert!(rule(NameKind::Namespace, &"a".repeat(33)).contains("32"));
        assert!(validate(NameKind::Table, &"a".repeat(64)).is_ok());
        assert!(rule(NameKind::Table, &"a".repeat(65)).contains("64"));
        assert!(rule(NameKind::Namespace, "system").contains("reserved namespace"));
        assert!(rule(NameKind::Column, "select").contains("reserved SQL keyword"));
        assert!(rule(NameKind::Table, "").contains("empty"));
    }
}
