//! QuillDB's statements on top of sqlparser's PostgreSQL dialect: QuillDB's own statements are
//! recognised by their first words; everything else goes to sqlparser. Errors carry the line and
//! column from sqlparser.

use datafusion::sql::sqlparser::ast::{
    ObjectType, SelectItem, Statement, WildcardAdditionalOptions,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

mod rewrite;

use rewrite::{bare_set_options, normalize_tokens, word};

use super::dialect::QuillDialect;
use crate::catalog::TableType;
pub use crate::catalog::names::{name_parts, normalize};
pub use crate::engine::limits::TextLimits;
use crate::error::{Error, Result};
use crate::live::query::LiveOptions;

pub use super::command::{Command, UserChange};
use super::command::{SUBSCRIBE_NO_LIMIT, SUBSCRIBE_NO_ORDER};

fn peek_word(p: &Parser, n: usize) -> Option<String> {
    word(&p.peek_nth_token(n))
}

fn ident(p: &mut Parser) -> Result<String> {
    Ok(normalize(&p.parse_identifier()?))
}

/// Where the text ends, for errors found at the end of the input (sqlparser gives none there).
fn end_position(sql: &str) -> String {
    let line = sql.lines().count().max(1);
    let column = sql
        .lines()
        .last()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    format!("Line: {line}, Column: {column}")
}

/// Parses exactly one statement (a trailing `;` is allowed), within `limits`.
pub fn parse(sql: &str, limits: &TextLimits) -> Result<Command> {
    limits.check_size(sql)?;
    parse_inner(sql, limits).map_err(|e| match e {
        Error::Parse(msg) if msg.contains("recursion limit exceeded") => too_deep(limits, None),
        Error::Parse(msg) if !msg.contains("Line:") => {
            Error::Parse(format!("{msg} at {}", end_position(sql)))
        }
        other => other,
    })
}

/// Tokenizes `sql` and refuses it when it nests deeper than `limits` allow.
pub fn tokenize(sql: &str, limits: &TextLimits) -> Result<Vec<TokenWithSpan>> {
    let tokens = Tokenizer::new(&QuillDialect::default(), sql)
        .tokenize_with_location()
        .map_err(|e| Error::Parse(e.to_string()))?;
    let depth = super::depth::nesting(tokens.iter().map(|t| &t.token), limits.max_depth);
    if depth > limits.max_depth {
        return Err(too_deep(limits, Some(depth)));
    }
    Ok(tokens)
}

fn parse_inner(sql: &str, limits: &TextLimits) -> Result<Command> {
    let dialect = QuillDialect::default();
    let tokens = tokenize(sql, limits)?;
    let mut p = Parser::new(&dialect)
        .with_recursion_limit(limits.parser_recursion())
        .with_tokens_with_locations(bare_set_options(normalize_tokens(tokens)));
    while p.consume_token(&Token::SemiColon) {}
    if p.peek_token().token == Token::EOF {
        return Err(Error::Parse("empty statement".into()));
    }
    let cmd = parse_one(&mut p)?;
    while p.consume_token(&Token::SemiColon) {}
    let next = p.peek_token();
    if next.token != Token::EOF {
        return Err(Error::Parse(format!(
            "one statement per call: found {} at Line: {}, Column: {}",
            next.token, next.span.start.line, next.span.start.column
        )));
    }
    Ok(cmd)
}

fn parse_one(p: &mut Parser) -> Result<Command> {
    let first = peek_word(p, 0).unwrap_or_default();
    let second = peek_word(p, 1).unwrap_or_default();
    match (first.as_str(), second.as_str()) {
        ("CREATE", "NAMESPACE") => {
            p.next_token();
            p.next_token();
            let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = ident(p)?;
            Ok(Command::CreateNamespace {
                name,
                if_not_exists,
            })
        }
        ("DROP", "NAMESPACE") => {
            p.next_token();
            p.next_token();
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = ident(p)?;
            Ok(Command::DropNamespace { name, if_exists })
        }
        ("CREATE", "TABLE") => {
            p.next_token();
            p.next_token();
            create_table(p, None)
        }
        ("CREATE", kind @ ("USER" | "SHARED" | "STREAM"))
            if peek_word(p, 2).as_deref() == Some("TABLE") =>
        {
            let prefix = TableType::parse(kind);
            p.next_token();
            p.next_token();
            p.next_token();
            create_table(p, prefix)
        }
        ("DROP", "TABLE") => {
            p.next_token();
            p.next_token();
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = p.parse_object_name(false)?;
            Ok(Command::DropTable { name, if_exists })
        }
        ("SHOW", "NAMESPACES") => {
            p.next_token();
            p.next_token();
            Ok(Command::ShowNamespaces)
        }
        ("SHOW", "TABLES") => {
            p.next_token();
            p.next_token();
            let ns = if p.parse_keyword(Keyword::IN) || p.parse_keyword(Keyword::FROM) {
                Some(ident(p)?)
            } else {
                None
            };
            Ok(Command::ShowTables(ns))
        }
        ("USE", _) => {
            p.next_token();
            Ok(Command::Use(ident(p)?))
        }
        ("SET", "NAMESPACE") => {
            p.next_token();
            p.next_token();
            let _ = p.consume_token(&Token::Eq);
            Ok(Command::Use(ident(p)?))
        }
        ("DESCRIBE" | "DESC", _) => {
            p.next_token();
            let _ = p.parse_keyword(Keyword::TABLE);
            Ok(Command::Describe(p.parse_object_name(false)?))
        }
        ("BEGIN" | "COMMIT" | "ROLLBACK" | "END" | "ABORT", _) | ("START", "TRANSACTION") => {
            let cmd = match first.as_str() {
                "BEGIN" | "START" => Command::Begin,
                "COMMIT" | "END" => Command::Commit,
                _ => Command::Rollback,
            };
            p.next_token();
            let _ = p.parse_keyword(Keyword::TRANSACTION) || p.parse_keyword(Keyword::WORK);
            Ok(cmd)
        }
        ("SUBSCRIBE", _) => {
            p.next_token();
            expect_word(
                p,
                "TO",
                "a subscription reads SUBSCRIBE TO [ns.]table ... or SUBSCRIBE TO SELECT ...",
            )?;
            let query = if peek_word(p, 0).as_deref() == Some("SELECT") {
                Statement::Query(p.parse_query()?)
            } else {
                let name = p.parse_object_name(false)?;
                let selection = if p.parse_keyword(Keyword::WHERE) {
                    Some(p.parse_expr()?)
                } else {
                    None
                };
                let relation = super::select::table_named(name);
                let all = SelectItem::Wildcard(WildcardAdditionalOptions::default());
                super::select::select(vec![all], super::select::from(relation), selection)
            };
            match peek_word(p, 0).as_deref() {
                Some("ORDER") => return Err(Error::InvalidArgument(SUBSCRIBE_NO_ORDER.into())),
                Some("LIMIT" | "FETCH" | "OFFSET") => {
                    return Err(Error::InvalidArgument(SUBSCRIBE_NO_LIMIT.into()));
                }
                _ => {}
            }
            let options = if p.parse_keyword(Keyword::OPTIONS) {
                live_options(p)?
            } else {
                LiveOptions::default()
            };
            Ok(Command::Subscribe {
                query: Box::new(query),
                options,
            })
        }
        ("STORAGE", "FLUSH") => {
            p.next_token();
            p.next_token();
            if p.parse_keyword(Keyword::ALL) {
                let ns = if p.parse_keyword(Keyword::IN) {
                    Some(ident(p)?)
                } else {
                    None
                };
                return Ok(Command::FlushAll(ns));
            }
            expect_word(
                p,
                "TABLE",
                "STORAGE FLUSH TABLE ns.t or STORAGE FLUSH ALL [IN ns]",
            )?;
            Ok(Command::FlushTable(p.parse_object_name(false)?))
        }
        ("STORAGE", "COMPACT") => {
            p.next_token();
            p.next_token();
            expect_word(p, "TABLE", "STORAGE COMPACT TABLE ns.t")?;
            Ok(Command::CompactTable(p.parse_object_name(false)?))
        }
        ("STORAGE", _) => Err(Error::Parse(
            "expected STORAGE FLUSH TABLE, STORAGE FLUSH ALL or STORAGE COMPACT TABLE".into(),
        )),
        ("SHOW", "MANIFEST") => {
            p.next_token();
            p.next_token();
            let _ = p.parse_keyword(Keyword::FOR);
            Ok(Command::ShowManifest(p.parse_object_name(false)?))
        }
        ("EXPORT", "USER") if peek_word(p, 2).as_deref() == Some("DATA") => {
            for _ in 0..3 {
                p.next_token();
            }
            let user = match p.peek_token().token {
                Token::EOF | Token::SemiColon => None,
                _ => Some(string_or_ident(p)?),
            };
            Ok(Command::ExportUserData(user))
        }
        ("SHOW", "STORAGES") => {
            p.next_token();
            p.next_token();
            Ok(Command::ShowStorages)
        }
        ("KILL", "JOB") => {
            p.next_token();
            p.next_token();
            Ok(Command::KillJob(string_or_ident(p)?))
        }
        ("KILL", "LIVE") => {
            p.next_token();
            p.next_token();
            match p.next_token().token {
                Token::Word(w) if w.value.eq_ignore_ascii_case("QUERY") => {}
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "expected KILL LIVE QUERY 'id', found {other}"
                    )));
                }
            }
            Ok(Command::KillLiveQuery(string_or_ident(p)?))
        }
        ("CREATE", "STORAGE") => {
            p.next_token();
            p.next_token();
            let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = ident(p)?;
            let mut kind = None;
            let mut options = Vec::new();
            while !matches!(p.peek_token().token, Token::EOF | Token::SemiColon) {
                let key = word(&p.next_token()).ok_or_else(|| {
                    Error::Parse("CREATE STORAGE expects KEY 'value' options".into())
                })?;
                let _ = p.consume_token(&Token::Eq);
                let value = p.parse_literal_string()?;
                if key == "TYPE" {
                    kind = Some(value.to_ascii_lowercase());
                } else {
                    options.push((key, value));
                }
            }
            let kind = kind.ok_or_else(|| {
                Error::InvalidArgument("CREATE STORAGE needs TYPE 'filesystem' or TYPE 's3'".into())
            })?;
            Ok(Command::CreateStorage {
                name,
                if_not_exists,
                kind,
                options,
            })
        }
        ("DROP", "STORAGE") => {
            p.next_token();
            p.next_token();
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = ident(p)?;
            Ok(Command::DropStorage { name, if_exists })
        }
        ("ALTER", "TABLE") => match p.parse_statement()? {
            Statement::AlterTable(a) => Ok(Command::AlterTable(Box::new(a))),
            other => Err(Error::InvalidArgument(format!(
                "unsupported statement: {other}"
            ))),
        },
        ("CREATE", "USER") => {
            p.next_token();
            p.next_token();
            let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = ident(p)?;
            let (mut password, mut role, mut email) = (None, None, None);
            while !matches!(p.peek_token().token, Token::EOF | Token::SemiColon) {
                match word(&p.next_token()).as_deref() {
                    Some("WITH") => continue,
                    Some("PASSWORD") => password = Some(p.parse_literal_string()?),
                    Some("ROLE") => role = Some(string_or_ident(p)?),
                    Some("EMAIL") => email = Some(p.parse_literal_string()?),
                    _ => {
                        return Err(Error::Parse(
                            "CREATE USER name WITH PASSWORD '...' [ROLE user|service|dba|system] \
                             [EMAIL '...']"
                                .into(),
                        ));
                    }
                }
            }
            let password = password.ok_or_else(|| {
                Error::InvalidArgument("CREATE USER needs WITH PASSWORD '...'".into())
            })?;
            Ok(Command::CreateUser {
                name,
                if_not_exists,
                password,
                role,
                email,
            })
        }
        ("ALTER", "USER") => {
            p.next_token();
            p.next_token();
            let name = ident(p)?;
            let usage = "ALTER USER name SET PASSWORD '...' | SET ROLE r | SET EMAIL '...'";
            expect_word(p, "SET", usage)?;
            let change = match word(&p.next_token()).as_deref() {
                Some("PASSWORD") => UserChange::Password(p.parse_literal_string()?),
                Some("ROLE") => UserChange::Role(string_or_ident(p)?),
                Some("EMAIL") => UserChange::Email(p.parse_literal_string()?),
                _ => return Err(Error::Parse(format!("expected {usage}"))),
            };
            Ok(Command::AlterUser { name, change })
        }
        ("DROP", "USER") => {
            p.next_token();
            p.next_token();
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = ident(p)?;
            Ok(Command::DropUser { name, if_exists })
        }
        ("EXECUTE", "AS") => {
            p.next_token();
            p.next_token();
            let usage = "EXECUTE AS USER 'name' ( statement )";
            expect_word(p, "USER", usage)?;
            let user = string_or_ident(p)?;
            if p.next_token().token != Token::LParen {
                return Err(Error::Parse(format!("expected {usage}")));
            }
            // The statement is parsed in place, from the same tokens, up to the ')'.
            let inner = parse_one(p)?;
            while p.consume_token(&Token::SemiColon) {}
            if !p.consume_token(&Token::RParen) {
                return Err(Error::Parse(format!(
                    "expected ')' after the statement, found {}: {usage}",
                    p.peek_token().token
                )));
            }
            if matches!(
                inner,
                Command::ExecuteAs { .. } | Command::Begin | Command::Commit | Command::Rollback
            ) {
                return Err(Error::InvalidArgument(
                    "EXECUTE AS USER runs one data or query statement, not another EXECUTE AS or \
                     a transaction command"
                        .into(),
                ));
            }
            Ok(Command::ExecuteAs {
                user,
                inner: Box::new(inner),
            })
        }
        ("CREATE", "VIEW" | "OR" | "MATERIALIZED") | ("DROP", "VIEW") => view_statement(p),
        ("KILL", _) | ("ALTER", _) => {
            // The rest is not parsed yet: skip to the end of the statement.
            while !matches!(p.peek_token().token, Token::EOF | Token::SemiColon) {
                p.next_token();
            }
            Ok(Command::Unsupported(
                format!("{first} {second}").trim().to_string(),
            ))
        }
        _ => {
            let stmt = p.parse_statement()?;
            match stmt {
                Statement::Insert(i) => Ok(Command::Insert(Box::new(i))),
                Statement::Update(u) => Ok(Command::Update(Box::new(u))),
                Statement::Delete(d) => Ok(Command::Delete(Box::new(d))),
                Statement::Query(_) | Statement::Explain { .. } => {
                    Ok(Command::Query(Box::new(stmt)))
                }
                other => Err(Error::InvalidArgument(format!(
                    "unsupported statement: {}",
                    other.to_string().chars().take(80).collect::<String>()
                ))),
            }
        }
    }
}

/// CREATE [OR REPLACE] VIEW and DROP VIEW, through sqlparser's own grammar; the options of
/// other databases (MATERIALIZED, TEMPORARY, IF NOT EXISTS, several names...) are refused.
fn view_statement(p: &mut Parser) -> Result<Command> {
    let unsupported = |what: &str| Error::Unsupported(format!("{what} (views here are plain)"));
    match p.parse_statement()? {
        Statement::CreateView(v) => {
            if v.materialized {
                return Err(unsupported("CREATE MATERIALIZED VIEW"));
            }
            if v.temporary {
                return Err(unsupported("CREATE TEMPORARY VIEW"));
            }
            if v.if_not_exists || v.or_alter || v.to.is_some() || v.params.is_some() {
                return Err(Error::Parse(
                    "expected CREATE [OR REPLACE] VIEW name [(columns)] AS query".into(),
                ));
            }
            Ok(Command::CreateView {
                name: v.name,
                or_replace: v.or_replace,
                columns: v.columns.iter().map(|c| normalize(&c.name)).collect(),
                query: v.query,
            })
        }
        Statement::Drop {
            object_type: ObjectType::View,
            if_exists,
            mut names,
            cascade: false,
            ..
        } if names.len() == 1 => Ok(Command::DropView {
            name: names.remove(0),
            if_exists,
        }),
        Statement::Drop { .. } => Err(Error::Parse(
            "expected DROP VIEW [IF EXISTS] name (one view; no CASCADE)".into(),
        )),
        other => Err(Error::Parse(format!(
            "expected CREATE [OR REPLACE] VIEW or DROP VIEW, found {}",
            other.to_string().chars().take(80).collect::<String>()
        ))),
    }
}

fn expect_word(p: &mut Parser, w: &str, usage: &str) -> Result<()> {
    if peek_word(p, 0).as_deref() == Some(w) {
        p.next_token();
        Ok(())
    } else {
        Err(Error::Parse(format!("expected {w}: {usage}")))
    }
}

/// A quoted string or a bare word (job and live query ids are written either way).
fn string_or_ident(p: &mut Parser) -> Result<String> {
    match p.peek_token().token {
        Token::SingleQuotedString(_) => Ok(p.parse_literal_string()?),
        _ => Ok(p.parse_identifier()?.value),
    }
}

fn create_table(p: &mut Parser, prefix: Option<TableType>) -> Result<Command> {
    let stmt = p.parse_create_table(false, false, None, false)?;
    Ok(Command::CreateTable {
        prefix,
        stmt: Box::new(stmt),
    })
}

/// The error of a statement nested deeper than `limits` allow.
fn too_deep(limits: &TextLimits, found: Option<usize>) -> Error {
    let found = found.map(|n| format!(" ({n} found)")).unwrap_or_default();
    Error::ResourceExhausted(format!(
        "the statement nests too deeply{found}: the limit is {} levels \
         (limits.max_expression_depth). Each operator of a chain (a + b + ..., x AND y AND \
         ...) adds a level, each bracket, function call, array or CASE nested in another \
         {}, each nested subquery {}: write long OR lists as IN (...), or split the \
         statement",
        limits.max_depth,
        super::depth::BRACKET,
        super::depth::SUBQUERY
    ))
}

/// `(k = v, ...)` after OPTIONS: a subscription's options.
fn live_options(p: &mut Parser) -> Result<LiveOptions> {
    let invalid = |m: String| Error::InvalidArgument(m);
    let mut options = LiveOptions::default();
    if !p.consume_token(&Token::LParen) {
        return Err(invalid(
            "OPTIONS takes a list in parentheses: OPTIONS (last_rows = 50)".into(),
        ));
    }
    loop {
        let key = match p.next_token().token {
            Token::Word(w) => w.value.to_ascii_lowercase(),
            _ => {
                return Err(invalid(
                    "each option is key = value, e.g. batch_size = 100".into(),
                ));
            }
        };
        if !p.consume_token(&Token::Eq) {
            return Err(invalid(
                "each option is key = value, e.g. batch_size = 100".into(),
            ));
        }
        let value = p.next_token().token;
        let number = || match &value {
            Token::Number(n, _) => n
                .parse::<u64>()
                .map_err(|_| invalid(format!("{key} takes a whole number, not {n}"))),
            other => Err(invalid(format!("{key} takes a whole number, not {other}"))),
        };
        match key.as_str() {
            "last_rows" => options.last_rows = Some(number()? as usize),
            "batch_size" => match number()? {
                0 => return Err(invalid("batch_size must be at least 1".into())),
                n => options.batch_size = n as usize,
            },
            "from" => options.from = Some(number()?),
            "all_users" => {
                options.all_users = match &value {
                    Token::Word(w) if w.value.eq_ignore_ascii_case("true") => true,
                    Token::Word(w) if w.value.eq_ignore_ascii_case("false") => false,
                    other => {
                        return Err(invalid(format!(
                            "all_users takes true or false, not {other}"
                        )));
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "unknown option {other}: expected last_rows, batch_size, from or all_users"
                )));
            }
        }
        if p.consume_token(&Token::RParen) {
            return Ok(options);
        }
        if !p.consume_token(&Token::Comma) {
            return Err(invalid(
                "each option is key = value, e.g. batch_size = 100".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TextLimits = TextLimits {
        max_bytes: 1 << 20,
        max_depth: 1000,
    };

    fn parse(sql: &str) -> Result<Command> {
        super::parse(sql, &LIMITS)
    }

    #[test]
    fn deep_statements_are_refused_naming_the_limit() {
        let deep_case = format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(50),
            " END".repeat(50)
        );
        assert!(
            parse(&deep_case).is_ok(),
            "50 nested CASE are within the limit"
        );
        let deeper = format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(2000),
            " END".repeat(2000)
        );
        match parse(&deeper) {
            Err(Error::ResourceExhausted(msg)) => {
                assert!(msg.contains("limits.max_expression_depth"), "{msg}");
                assert!(msg.contains("1000"), "{msg}");
            }
            other => panic!("expected the depth limit, got {other:?}"),
        }
        let parens = format!("SELECT {}1{}", "(".repeat(90), ")".repeat(90));
        assert!(parse(&parens).is_ok(), "90 brackets are within the limit");
        let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(20), ")".repeat(20));
        assert!(parse(&subqueries).is_err(), "20 nested subqueries are not");
        let long = format!("SELECT '{}'", "x".repeat(2 << 20));
        assert!(
            matches!(parse(&long), Err(Error::ResourceExhausted(m)) if m.contains("max_sql_bytes"))
        );
    }

    #[test]
    fn quill_statements_parse() {
        assert!(matches!(
            parse("create namespace if not exists Chat;"),
            Ok(Command::CreateNamespace { ref name, if_not_exists: true }) if name == "chat"
        ));
        assert!(matches!(
            parse("SHOW TABLES IN app"),
            Ok(Command::ShowTables(Some(_)))
        ));
        assert!(matches!(
            parse("CREATE USER TABLE app.t (id BIGINT PRIMARY KEY)"),
            Ok(Command::CreateTable {
                prefix: Some(TableType::User),
                ..
            })
        ));
        assert!(matches!(parse("SELECT 1"), Ok(Command::Query(_))));
        match parse("SELECT * FROM t WHERE a = ? AND b = ?") {
            Ok(Command::Query(q)) => assert!(q.to_string().contains("a = $1 AND b = $2"), "{q}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("STORAGE FLUSH TABLE a.b"),
            Ok(Command::FlushTable(_))
        ));
        match parse(
            "EXECUTE AS USER 'alice' ( INSERT INTO c.m (room, body) VALUES ('r1', 'hi (x)') )",
        ) {
            Ok(Command::ExecuteAs { user, inner }) => {
                assert_eq!(user, "alice");
                assert!(matches!(*inner, Command::Insert(_)));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse("storage flush all in app"), Ok(Command::FlushAll(Some(ref n))) if n == "app")
        );
        assert!(
            matches!(parse("KILL JOB 'FL-abc123'"), Ok(Command::KillJob(ref j)) if j == "FL-abc123")
        );
        assert!(matches!(
            parse("CREATE STORAGE disk2 TYPE 'filesystem' PATH '/mnt/cold'"),
            Ok(Command::CreateStorage { ref kind, ref options, .. }) if kind == "filesystem" && options.len() == 1
        ));
    }

    #[test]
    fn errors_give_line_and_column() {
        let e = parse("SELECT *\nFROM")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("Line: 2"), "{e}");
        assert!(parse("SELECT 1; SELECT 2").is_err(), "two statements");
    }

    #[test]
    fn subscribe_is_a_statement() {
        let Ok(Command::Subscribe { query, options }) =
            parse("SUBSCRIBE TO a.b WHERE v > $1 OPTIONS (last_rows = 5, all_users = true)")
        else {
            panic!("a subscription");
        };
        assert_eq!(query.to_string(), "SELECT * FROM a.b WHERE v > $1");
        assert_eq!(options.last_rows, Some(5));
        assert!(options.all_users);
        assert_eq!(options.batch_size, 1000);
        // OPTIONS after a table name is never its alias.
        let Ok(Command::Subscribe { query, options }) =
            parse("SUBSCRIBE TO SELECT id, v FROM a.b OPTIONS (batch_size = 7);")
        else {
            panic!("a subscription");
        };
        assert_eq!(query.to_string(), "SELECT id, v FROM a.b");
        assert_eq!(options.batch_size, 7);
        for bad in [
            "SUBSCRIBE a.b",
            "SUBSCRIBE TO a.b OPTIONS (batch_size = 0)",
            "SUBSCRIBE TO a.b OPTIONS (colour = 1)",
            "SUBSCRIBE TO a.b OPTIONS last_rows = 1",
            "SUBSCRIBE TO a.b WHERE",
            "SUBSCRIBE TO a.b ORDER BY id",
            "SUBSCRIBE TO a.b LIMIT 1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
