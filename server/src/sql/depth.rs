//! How deep a statement nests, measured on its tokens before anything is built from them.
//!
//! Every layer that reads a statement (sqlparser, DataFusion's planner and optimizer, the
//! physical expressions, our own walks, and the compiler's `Drop` and `Clone` of each tree)
//! recurses once per level of nesting. A left-deep chain such as `1+1+...+1` is parsed by a loop,
//! so the parser's own recursion counter never sees it, yet every later walk recurses once per
//! term. So the depth is bounded here, on the flat token list, where counting costs nothing and
//! no deep tree exists yet: a statement that passes builds trees at most a small constant times
//! [`nesting`]'s score deep, which the threads that plan and execute have the stack for.
//!
//! The score is the height of the tree a parser would build, worked out from the flat tokens
//! with operator-precedence parsing that keeps only heights, never nodes, and weighted by what
//! each level costs the planner:
//! - an operator takes the expression before it (up to looser operators) as its left operand
//!   and what follows as its right: `a AND b AND c` is two levels over its comparisons, and the
//!   `<>` of each `id <> n` in a chain of them adds one level, not one per predicate;
//! - a comma (and `WHEN`, `THEN`, `ELSE` inside CASE) starts a sibling: long select lists, IN
//!   lists and VALUES rows are wide, not deep;
//! - each clause keyword, `UNION`, `JOIN`, and each comma after `FROM` and `WITH` adds a level:
//!   the planner nests each further table and each common table expression over the ones
//!   before;
//! - `(`, `[`, `{` and `CASE` start an operand [`BRACKET`] levels deep, a subquery
//!   [`SUBQUERY`] levels deep; brackets right after a closing bracket (`INT[][]`) add a level
//!   more each. The weights follow what DataFusion's planning costs, measured: type coercion
//!   re-derives every argument's type and name at each level of nested function calls and
//!   array literals (cubic in their depth: 100 levels plan in 0.2 s in a debug build, 400 in
//!   16 s), and nested scalar subqueries cost about twice as much per level (8 levels: 34 ms,
//!   16 levels: 3.8 s). Operator chains are close to linear (1,000 terms: 0.3 s).
//!
//! The count runs in one pass over the tokens with work and memory linear in their number.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

/// Levels a bracket, function call, array literal or CASE costs.
pub const BRACKET: usize = 10;
/// Levels a subquery costs.
pub const SUBQUERY: usize = 80;

/// Precedence classes, loosest first.
const RELATION: usize = 0;
const OR: usize = 1;
const AND: usize = 2;
const NOT: usize = 3;
const COMPARE: usize = 4;
const OTHER: usize = 5;
const ADD: usize = 6;
const MULTIPLY: usize = 7;
const POSTFIX: usize = 8;

/// What opened a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    Statement,
    Bracket,
    Case,
}

/// How a comma in the current clause counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commas {
    /// A sibling of the list.
    Sibling,
    /// Nests over what came before (FROM lists, WITH lists).
    Nest,
}

/// An operator waiting for its right operand.
#[derive(Debug, Clone, Copy)]
struct Pending {
    class: usize,
    /// Height of its left operand (0 for a prefix operator).
    left: usize,
}

/// One bracketed group (or the statement): operators not yet reduced and the height of the
/// operand being read.
#[derive(Debug)]
struct Group {
    opener: Opener,
    /// Levels the group adds around its contents.
    weight: usize,
    /// No token has been read inside the group yet.
    fresh: bool,
    pending: Vec<Pending>,
    /// Height of the operand being read; `None` right after an operator.
    operand: Option<usize>,
    /// The highest sibling of the current list.
    siblings: usize,
    /// Where the current list starts in `pending`.
    floor: usize,
    commas: Commas,
}

impl Group {
    fn new(opener: Opener) -> Self {
        Self {
            opener,
            weight: match opener {
                Opener::Statement => 0,
                Opener::Bracket | Opener::Case => BRACKET,
            },
            fresh: true,
            pending: Vec::new(),
            operand: None,
            siblings: 0,
            floor: 0,
            commas: Commas::Sibling,
        }
    }

    fn leaf(&mut self, height: usize) {
        self.operand = Some(self.operand.map_or(height, |o| o.max(height)));
    }

    /// Reduces the pending operators above `down_to` whose class is at least `class`.
    fn reduce(&mut self, down_to: usize, class: usize) -> usize {
        let mut height = self.operand.unwrap_or(0);
        while self.pending.len() > down_to {
            match self.pending.last() {
                Some(p) if p.class >= class => {
                    height = p.left.max(height) + 1;
                    self.pending.pop();
                }
                _ => break,
            }
        }
        height
    }

    fn binary(&mut self, class: usize) {
        let left = self.reduce(self.floor, class);
        self.pending.push(Pending { class, left });
        self.operand = None;
    }

    fn prefix(&mut self, class: usize) {
        self.pending.push(Pending { class, left: 0 });
    }

    /// A token that is an operator after an operand and a prefix before one.
    fn either(&mut self, class: usize) {
        if self.operand.is_some() {
            self.binary(class);
        } else {
            self.prefix(class);
        }
    }

    /// Ends the current element of a list.
    fn sibling(&mut self) {
        let height = self.reduce(self.floor, 0);
        self.siblings = self.siblings.max(height);
        self.operand = None;
    }

    /// Ends the current list: its height is that of its highest element.
    fn end_list(&mut self) {
        self.sibling();
        self.operand = Some(std::mem::take(&mut self.siblings));
        self.floor = 0;
    }

    fn clause(&mut self, commas: Commas) {
        self.end_list();
        self.binary(RELATION);
        self.floor = self.pending.len();
        self.commas = commas;
    }

    /// The height of the whole group.
    fn finish(&mut self) -> usize {
        self.end_list();
        self.reduce(0, 0)
    }
}

/// The precedence class of a keyword that combines expressions or relations.
fn keyword_class(k: Keyword) -> Option<usize> {
    use Keyword as K;
    Some(match k {
        K::UNION | K::EXCEPT | K::INTERSECT | K::MINUS | K::JOIN | K::LATERAL => RELATION,
        K::OR | K::XOR => OR,
        K::AND => AND,
        K::NOT => NOT,
        K::IS
        | K::IN
        | K::LIKE
        | K::ILIKE
        | K::SIMILAR
        | K::REGEXP
        | K::RLIKE
        | K::BETWEEN
        | K::ESCAPE
        | K::OVERLAPS
        | K::EXISTS
        | K::ANY
        | K::ALL
        | K::SOME => COMPARE,
        K::COLLATE | K::AT => OTHER,
        K::DIV | K::MOD => MULTIPLY,
        K::INTERVAL => POSTFIX,
        _ => return None,
    })
}

/// Keywords that start a clause, and how commas count in that clause.
fn clause_keyword(k: Keyword) -> Option<Commas> {
    use Keyword as K;
    match k {
        K::FROM | K::WITH => Some(Commas::Nest),
        K::SELECT
        | K::WHERE
        | K::GROUP
        | K::HAVING
        | K::ORDER
        | K::LIMIT
        | K::OFFSET
        | K::VALUES
        | K::SET
        | K::RETURNING
        | K::WINDOW
        | K::QUALIFY
        | K::ON
        | K::USING
        | K::INTO
        | K::OPTIONS => Some(Commas::Sibling),
        _ => None,
    }
}

/// The precedence class of an operator symbol; `None` for leaves and punctuation.
fn symbol_class(t: &Token) -> Option<usize> {
    Some(match t {
        Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Spaceship
        | Token::Tilde
        | Token::TildeAsterisk
        | Token::ExclamationMarkTilde
        | Token::ExclamationMarkTildeAsterisk
        | Token::DoubleTilde
        | Token::DoubleTildeAsterisk
        | Token::ExclamationMarkDoubleTilde
        | Token::ExclamationMarkDoubleTildeAsterisk => COMPARE,
        Token::Plus | Token::Minus => ADD,
        Token::Mul | Token::Div | Token::DuckIntDiv | Token::Mod | Token::Caret => MULTIPLY,
        Token::DoubleColon | Token::ExclamationMark => POSTFIX,
        Token::Word(_)
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Placeholder(_)
        | Token::Whitespace(_)
        | Token::EOF
        | Token::Period
        | Token::Comma
        | Token::SemiColon
        | Token::Colon
        | Token::LParen
        | Token::RParen
        | Token::LBracket
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace => return None,
        // Every other symbol is an operator (`||`, `&`, `->`, `@>`, ...).
        _ => OTHER,
    })
}

/// The groups open, innermost last.
struct Nest {
    groups: Vec<Group>,
}

impl Nest {
    fn top(&mut self) -> &mut Group {
        if self.groups.is_empty() {
            self.groups.push(Group::new(Opener::Statement));
        }
        let last = self.groups.len() - 1;
        &mut self.groups[last]
    }

    fn open(&mut self, opener: Opener) {
        self.groups.push(Group::new(opener));
    }

    /// Closes the innermost group if `opener` opened it; answers whether it did.
    fn close(&mut self, opener: Opener) -> bool {
        if self.groups.len() < 2 || self.groups.last().map(|g| g.opener) != Some(opener) {
            return false;
        }
        if let Some(mut g) = self.groups.pop() {
            let height = g.finish() + g.weight;
            self.top().leaf(height);
        }
        true
    }

    /// The height of everything read so far, every open group closed.
    fn finish(&mut self) -> usize {
        while self.groups.len() > 1 {
            if let Some(mut g) = self.groups.pop() {
                let height = g.finish() + g.weight;
                self.top().leaf(height);
            }
        }
        let height = self.top().finish();
        self.groups.clear();
        height
    }
}

/// The height of the deepest statement of `tokens` (see the module docs). Stops, and answers a
/// figure above `stop_above`, as soon as the height is sure to pass it.
pub fn nesting<'a>(tokens: impl IntoIterator<Item = &'a Token>, stop_above: usize) -> usize {
    let mut nest = Nest {
        groups: vec![Group::new(Opener::Statement)],
    };
    let mut deepest = 0;
    // The last significant token closed a bracket.
    let mut after_close = false;
    for token in tokens {
        if matches!(token, Token::Whitespace(_)) {
            continue;
        }
        let closed = std::mem::take(&mut after_close);
        // A bracket whose first word is SELECT, WITH or VALUES holds a subquery.
        let top = nest.top();
        if std::mem::take(&mut top.fresh)
            && top.opener == Opener::Bracket
            && matches!(token, Token::Word(w) if matches!(w.keyword, Keyword::SELECT | Keyword::WITH | Keyword::VALUES))
        {
            top.weight = SUBQUERY;
        }
        match token {
            Token::SemiColon => deepest = deepest.max(nest.finish()),
            Token::Comma => {
                let top = nest.top();
                match top.commas {
                    Commas::Sibling => top.sibling(),
                    Commas::Nest => top.binary(RELATION),
                }
            }
            Token::LParen | Token::LBracket | Token::LBrace => {
                if closed {
                    nest.top().binary(POSTFIX);
                }
                nest.open(Opener::Bracket);
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                after_close = nest.close(Opener::Bracket);
            }
            Token::Word(w) if w.quote_style.is_none() => match w.keyword {
                Keyword::CASE => nest.open(Opener::Case),
                Keyword::END if nest.top().opener == Opener::Case => {
                    after_close = nest.close(Opener::Case);
                }
                Keyword::WHEN | Keyword::THEN | Keyword::ELSE
                    if nest.top().opener == Opener::Case =>
                {
                    nest.top().sibling();
                }
                // `a NOT IN`, `a NOT LIKE`: part of the operator that follows.
                Keyword::NOT if nest.top().operand.is_some() => {}
                k => {
                    if let Some(class) = keyword_class(k) {
                        nest.top().either(class);
                    } else if let Some(commas) = clause_keyword(k) {
                        nest.top().clause(commas);
                    } else {
                        nest.top().leaf(0);
                    }
                }
            },
            other => match symbol_class(other) {
                Some(class) => nest.top().either(class),
                None => nest.top().leaf(0),
            },
        }
        // Open groups and the innermost one's pending operators each add a level at least.
        let lower = nest.groups.len() + nest.groups.last().map_or(0, |g| g.pending.len());
        if lower > stop_above {
            return lower;
        }
    }
    deepest.max(nest.finish())
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn score(sql: &str) -> usize {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap_or_default();
        nesting(&tokens, usize::MAX)
    }

    fn repeat(part: &str, n: usize) -> String {
        std::iter::repeat_n(part, n).collect()
    }

    #[test]
    fn chains_and_nesting_count_once_per_level() {
        let chain = format!("SELECT 1{}", repeat("+1", 1000));
        assert!(score(&chain) > 1000);
        let parens = format!("SELECT {}1{}", repeat("(", 500), repeat(")", 500));
        assert!(score(&parens) > 500);
        let ands = format!(
            "SELECT * FROM t WHERE id <> 0{}",
            (1..800)
                .map(|i| format!(" AND id <> {i}"))
                .collect::<String>()
        );
        assert!(score(&ands) > 800);
        let case = format!(
            "SELECT {}1{}",
            repeat("CASE WHEN true THEN ", 300),
            repeat(" END", 300)
        );
        assert!(score(&case) > 300);
        let calls = format!("SELECT {}1{}", repeat("abs(", 300), repeat(")", 300));
        assert!(score(&calls) > 300);
        let arrays = format!("SELECT {}1{}", repeat("[", 300), repeat("]", 300));
        assert!(score(&arrays) > 300);
        let unions = format!("SELECT 1, 2{}", repeat(" UNION ALL SELECT 1, 2", 300));
        assert!(score(&unions) > 300);
        let from = format!("SELECT * FROM t{}", repeat(", t", 300));
        assert!(score(&from) > 300);
        let types = format!("CREATE TABLE t (a INT{})", repeat("[]", 300));
        assert!(score(&types) > 300);
    }

    #[test]
    fn lists_of_siblings_stay_shallow() {
        let values = format!(
            "INSERT INTO t VALUES {}",
            (0..10_000)
                .map(|i| format!("({i}, 'x', -{i}, {i} + 1)"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(score(&values) < 30, "{}", score(&values));
        let in_list = format!(
            "SELECT * FROM t WHERE id IN ({})",
            (0..10_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(score(&in_list) < 30);
        let select = format!(
            "SELECT {} FROM t",
            (0..5_000)
                .map(|i| format!("a + {i} AS c{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(score(&select) < 30);
        let case = format!(
            "SELECT CASE x {} ELSE 0 END FROM t",
            (0..5_000)
                .map(|i| format!("WHEN {i} THEN {i} * 2"))
                .collect::<String>()
        );
        assert!(score(&case) < 30);
        // Statements one after the other do not add up.
        let many = repeat("SELECT 1 + 1 + 1; ", 1000);
        assert!(score(&many) < 30);
    }

    #[test]
    fn a_deep_operand_under_a_long_chain_adds_up() {
        // The deep operand ends up at the bottom of the chain's tree.
        let sql = format!(
            "SELECT {}1{} = 1{}",
            repeat("(", 600),
            repeat(")", 600),
            repeat(" AND true", 600)
        );
        assert!(score(&sql) > 1200, "{}", score(&sql));
        // Each predicate of an AND chain adds one level, not one per operator in it.
        let ands = format!(
            "SELECT * FROM t WHERE id <> 0{}",
            (1..800)
                .map(|i| format!(" AND id <> {i} + 1"))
                .collect::<String>()
        );
        assert!((800..820).contains(&score(&ands)), "{}", score(&ands));
    }

    #[test]
    fn counting_stops_past_the_limit() {
        let nots = format!("SELECT {}true", repeat("NOT ", 100_000));
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, &nots)
            .tokenize()
            .unwrap_or_default();
        let n = nesting(&tokens, 50);
        assert!((51..60).contains(&n), "{n}");
        let chain = format!("SELECT 1{}", repeat("+1", 100_000));
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, &chain)
            .tokenize()
            .unwrap_or_default();
        assert!(nesting(&tokens, 50) > 50);
    }
}
