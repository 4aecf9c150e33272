//! Rewrites of the token stream before sqlparser sees it: spellings the contract uses that
//! sqlparser's dialect does not parse, and one placeholder style for every layer.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

/// The upper-cased text of an unquoted word.
pub(super) fn word(t: &TokenWithSpan) -> Option<String> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Two rewrites on the token stream before parsing:
/// - `CURRENT_USER()` as the contract writes it: sqlparser knows only the SQL-standard form
///   without parentheses, so the empty parentheses are dropped; `CURRENT_ROLE`, which sqlparser
///   does not know, always becomes the call `CURRENT_ROLE()`;
/// - `?` placeholders (the qmark style of DB-API and JDBC clients) become `$1`, `$2`, ... so that
///   every layer sees one placeholder style.
pub(super) fn normalize_tokens(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut qmarks = 0;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let qmark = match &t.token {
            Token::Placeholder(p) => p == "?",
            Token::Question => true,
            _ => false,
        };
        if qmark {
            qmarks += 1;
            out.push(TokenWithSpan {
                token: Token::Placeholder(format!("${qmarks}")),
                span: t.span,
            });
            i += 1;
            continue;
        }
        out.push(t.clone());
        // CURRENT_ROLE is no SQL keyword for sqlparser: without parentheses it would be a
        // column, so it always becomes the call `CURRENT_ROLE()`.
        if word(t).as_deref() == Some("CURRENT_ROLE") {
            let mut j = i + 1;
            while matches!(tokens.get(j).map(|t| &t.token), Some(Token::Whitespace(_))) {
                j += 1;
            }
            if !matches!(tokens.get(j).map(|t| &t.token), Some(Token::LParen)) {
                for token in [Token::LParen, Token::RParen] {
                    out.push(TokenWithSpan {
                        token,
                        span: t.span,
                    });
                }
            }
            i += 1;
            continue;
        }
        if word(t).as_deref() == Some("CURRENT_USER") {
            let mut j = i + 1;
            while matches!(tokens.get(j).map(|t| &t.token), Some(Token::Whitespace(_))) {
                j += 1;
            }
            if matches!(tokens.get(j).map(|t| &t.token), Some(Token::LParen)) {
                let mut k = j + 1;
                while matches!(tokens.get(k).map(|t| &t.token), Some(Token::Whitespace(_))) {
                    k += 1;
                }
                if matches!(tokens.get(k).map(|t| &t.token), Some(Token::RParen)) {
                    i = k + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// `ALTER TABLE t SET KEY = value [, ...]` as `ALTER TABLE t SET (KEY = value, ...)`: the
/// form without brackets reads naturally for one option and is what the contract's notes use.
pub(super) fn bare_set_options(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let words: Vec<(usize, String)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, t)| (i, word(t).unwrap_or_default()))
        .collect();
    let starts = words.len() > 4 && words[0].1 == "ALTER" && words[1].1 == "TABLE";
    let Some(set) = words
        .iter()
        .position(|(_, w)| w == "SET")
        .filter(|_| starts)
    else {
        return tokens;
    };
    // SET then an option name then `=`: not yet bracketed.
    let bare = words.get(set + 1).is_some_and(|(_, w)| !w.is_empty())
        && words
            .get(set + 2)
            .is_some_and(|(i, _)| tokens[*i].token == Token::Eq);
    if !bare {
        return tokens;
    }
    let open_at = words[set].0 + 1;
    // The options run to the end of the statement.
    let close_at = tokens
        .iter()
        .enumerate()
        .skip(open_at)
        .find(|(_, t)| matches!(t.token, Token::SemiColon | Token::EOF))
        .map_or(tokens.len(), |(i, _)| i);
    let span = tokens[words[set].0].span;
    let bracket = |token| TokenWithSpan { token, span };
    let total = tokens.len();
    let mut out = Vec::with_capacity(total + 2);
    for (i, t) in tokens.into_iter().enumerate() {
        if i == open_at {
            out.push(bracket(Token::LParen));
        }
        if i == close_at {
            out.push(bracket(Token::RParen));
        }
        out.push(t);
    }
    if close_at == total {
        out.push(bracket(Token::RParen));
    }
    out
}
