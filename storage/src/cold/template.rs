//! Folder templates such as `{namespace}/{table}/{user_id}`, compiled once into parts so that
//! resolving a folder is a few appends, never a search-and-replace.

use object_store::path::Path;

use crate::{Error, Result};

/// The default folder of a SHARED table.
pub const SHARED_DEFAULT: &str = "{namespace}/{table}";
/// The default folder of a USER table.
pub const USER_DEFAULT: &str = "{namespace}/{table}/{user_id}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Namespace,
    Table,
    UserId,
}

/// A compiled folder template: path segments made of literals and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Vec<Part>>,
}

impl PathTemplate {
    /// Compiles `source`. Placeholders are `{namespace}`, `{table}` and `{user_id}`;
    /// `per_user` says whether `{user_id}` must (USER tables) or must not (SHARED) appear.
    pub fn compile(source: &str, per_user: bool) -> Result<Self> {
        let bad = |why: String| Error::InvalidTemplate {
            template: source.to_string(),
            detail: why,
        };
        let mut segments = Vec::new();
        let (mut has_ns, mut has_table, mut has_user) = (false, false, false);
        for seg in source.split('/').filter(|s| !s.is_empty()) {
            if seg == "." || seg == ".." {
                return Err(bad("'.' and '..' are not allowed".into()));
            }
            let mut parts = Vec::new();
            let mut rest = seg;
            while let Some(open) = rest.find('{') {
                if open > 0 {
                    parts.push(Part::Literal(rest[..open].to_string()));
                }
                let close = rest[open..]
                    .find('}')
                    .ok_or_else(|| bad("a '{' is not closed".into()))?
                    + open;
                let part = match &rest[open + 1..close] {
                    "namespace" => {
                        has_ns = true;
                        Part::Namespace
                    }
                    "table" => {
                        has_table = true;
                        Part::Table
                    }
                    "user_id" => {
                        has_user = true;
                        Part::UserId
                    }
                    other => return Err(bad(format!("unknown placeholder {{{other}}}"))),
                };
                parts.push(part);
                rest = &rest[close + 1..];
            }
            if rest.contains('}') {
                return Err(bad("a '}' is not opened".into()));
            }
            if !rest.is_empty() {
                parts.push(Part::Literal(rest.to_string()));
            }
            segments.push(parts);
        }
        if !has_ns || !has_table {
            return Err(bad("it must hold {namespace} and {table}".into()));
        }
        // A user's folder is the last part, so a table's folders are the children of one root
        // (what DROP TABLE removes and compaction lists).
        if per_user && segments.last() != Some(&vec![Part::UserId]) {
            return Err(bad(
                "a USER table template must end with the folder {user_id}".into(),
            ));
        }
        if per_user != has_user {
            return Err(bad(if per_user {
                "a USER table template must hold {user_id}".into()
            } else {
                "a SHARED table template cannot hold {user_id}".into()
            }));
        }
        Ok(Self {
            source: source.to_string(),
            segments,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The folder of one table (and user). Names were validated by the catalog: they hold no
    /// `/` and are never `.` or `..`.
    pub fn folder(&self, namespace: &str, table: &str, user_id: Option<&str>) -> Path {
        let mut out = String::new();
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            for part in seg {
                out.push_str(match part {
                    Part::Literal(s) => s,
                    Part::Namespace => namespace,
                    Part::Table => table,
                    Part::UserId => user_id.unwrap_or("_"),
                });
            }
        }
        Path::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_resolves() {
        let t = PathTemplate::compile(USER_DEFAULT, true).unwrap();
        assert_eq!(
            t.folder("chat", "messages", Some("alice")).as_ref(),
            "chat/messages/alice"
        );
        let t = PathTemplate::compile("data/{namespace}-{table}", false).unwrap();
        assert_eq!(t.folder("a", "b", None).as_ref(), "data/a-b");
        for bad in [
            "{namespace}",
            "{namespace}/{table}/{x}",
            "../{namespace}/{table}",
            "{namespace/{table}",
        ] {
            assert!(PathTemplate::compile(bad, false).is_err(), "{bad}");
        }
        assert!(PathTemplate::compile(SHARED_DEFAULT, true).is_err());
        assert!(PathTemplate::compile(USER_DEFAULT, false).is_err());
        assert!(PathTemplate::compile("{user_id}/{namespace}/{table}", true).is_err());
    }
}
