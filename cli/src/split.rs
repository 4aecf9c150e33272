//! Reading SQL text: statements split at `;` outside strings, quoted names and comments, meta
//! commands (`\...` lines), and the tokens the shell colours.

/// One thing to run from a script or an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A SQL statement, comments removed, without its `;`.
    Sql(String),
    /// A meta command line, `\` included.
    Meta(String),
}

/// A lexical token's kind, for highlighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A name or keyword.
    Word,
    /// A `'...'` string.
    Str,
    /// A `"..."` name.
    Quoted,
    /// A `--` or `/* */` comment.
    Comment,
    /// A number.
    Number,
    /// Anything else (operators, `;`, spaces).
    Other,
}

/// The tokens of `text` as `(kind, start, end)` byte ranges; an unterminated string or comment
/// runs to the end.
pub fn tokens(text: &str) -> Vec<(Kind, usize, usize)> {
    scan(text).0
}

/// The tokens, and whether the text ends inside a string, a quoted name or a block comment.
fn scan(text: &str) -> (Vec<(Kind, usize, usize)>, bool) {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut open = false;
    while i < b.len() {
        let start = i;
        open = false;
        let kind = match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                loop {
                    match b.get(i) {
                        None => {
                            open = true;
                            break;
                        }
                        Some(&c) if c == q => {
                            i += 1;
                            if b.get(i) == Some(&q) {
                                i += 1; // '' and "" stand for the quote itself
                            } else {
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
                if q == b'\'' { Kind::Str } else { Kind::Quoted }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                Kind::Comment
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                open = i >= b.len();
                i = (i + 2).min(b.len());
                Kind::Comment
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
                Kind::Word
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                Kind::Number
            }
            _ => {
                i += 1;
                while i < b.len() && b[i] >= 0x80 && b[i] < 0xC0 {
                    i += 1; // the rest of a UTF-8 character
                }
                Kind::Other
            }
        };
        out.push((kind, start, i));
    }
    (out, open)
}

/// Splits `text` into the items it completes, and the unfinished rest (empty when none).
pub fn split(text: &str) -> (Vec<Item>, String) {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut line_start = true;
    let (toks, open_at_end) = scan(text);
    let mut i = 0;
    while i < toks.len() {
        let (kind, start, end) = toks[i];
        let t = &text[start..end];
        if line_start && current.trim().is_empty() && t == "\\" {
            // A meta command: the rest of the line.
            let stop = text[start..].find('\n').map_or(text.len(), |n| start + n);
            items.push(Item::Meta(text[start..stop].trim().to_string()));
            current.clear();
            while i < toks.len() && toks[i].1 < stop {
                i += 1;
            }
            continue;
        }
        match kind {
            Kind::Comment => current.push(' '),
            Kind::Other if t == ";" => {
                let stmt = current.trim();
                if !stmt.is_empty() {
                    items.push(Item::Sql(stmt.to_string()));
                }
                current.clear();
            }
            _ => current.push_str(t),
        }
        if t.contains('\n') {
            line_start = true;
        } else if !t.trim().is_empty() {
            line_start = false;
        }
        i += 1;
    }
    let rest = if open_at_end || !current.trim().is_empty() {
        current.trim().to_string()
    } else {
        String::new()
    };
    (items, rest)
}

/// Whether interactive input is ready to run: a meta command, or SQL ending with `;` outside
/// any string or comment.
pub fn complete(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() || t.starts_with('\\') {
        return true;
    }
    let (toks, open) = scan(text);
    if open {
        return false;
    }
    toks.iter()
        .rev()
        .find(|(k, s, e)| *k != Kind::Comment && !text[*s..*e].trim().is_empty())
        .is_some_and(|(_, s, e)| &text[*s..*e] == ";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(items: &[Item]) -> Vec<&str> {
        items
            .iter()
            .map(|i| match i {
                Item::Sql(s) | Item::Meta(s) => s.as_str(),
            })
            .collect()
    }

    #[test]
    fn semicolons_in_strings_names_and_comments_do_not_end_statements() {
        let text = "SELECT 'a;b', \"x;y\" FROM t; -- c;d\n/* e;\nf */ SELECT 'it''s;'\n;";
        let (items, rest) = split(text);
        assert_eq!(
            sql(&items),
            ["SELECT 'a;b', \"x;y\" FROM t", "SELECT 'it''s;'"]
        );
        assert_eq!(rest, "");
    }

    #[test]
    fn statements_span_lines_and_the_unfinished_rest_is_kept() {
        let (items, rest) = split("INSERT INTO t\nVALUES (1);\nSELECT *\nFROM t");
        assert_eq!(sql(&items), ["INSERT INTO t\nVALUES (1)"]);
        assert_eq!(rest, "SELECT *\nFROM t");
        let (items, rest) = split("-- only a comment\n/* and another */");
        assert!(items.is_empty() && rest.is_empty());
    }

    #[test]
    fn meta_commands_take_their_line() {
        let (items, _) = split("\\dt app\nSELECT 1;\n  \\q\n");
        assert_eq!(
            items,
            [
                Item::Meta("\\dt app".into()),
                Item::Sql("SELECT 1".into()),
                Item::Meta("\\q".into())
            ]
        );
    }

    #[test]
    fn input_is_complete_at_a_real_semicolon() {
        assert!(complete("SELECT 1;"));
        assert!(complete("SELECT 1; -- done"));
        assert!(complete("\\dt"));
        assert!(!complete("SELECT ';"));
        assert!(!complete("SELECT 1 /* ; */"));
        assert!(!complete("SELECT 'it''"));
        assert!(complete("SELECT 'it''s';"));
        assert!(!complete("SELECT 1"));
    }
}
