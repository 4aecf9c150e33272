//! SELECT statements built from parts of a parsed statement: the rows an UPDATE, DELETE or
//! upsert changes, and the query that types a DML statement's parameters, are planned from
//! the statement's own AST nodes, never from SQL text printed and parsed again.

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Ident, ObjectName, Query, Select, SelectFlavor, SelectItem,
    SetExpr, Statement, TableFactor, TableWithJoins, Value,
};

/// A quoted identifier: the name as stored, whatever its case.
pub fn ident(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

/// The column `name`.
pub fn column(name: &str) -> Expr {
    Expr::Identifier(ident(name))
}

/// `expr AS "name"`.
pub fn named(expr: Expr, name: &str) -> SelectItem {
    SelectItem::ExprWithAlias {
        expr,
        alias: ident(name),
    }
}

/// The table `parts` (quoted), with no alias.
pub fn table(parts: &[&str]) -> TableFactor {
    table_named(ObjectName::from(
        parts.iter().map(|p| ident(p)).collect::<Vec<_>>(),
    ))
}

/// The table `name`, with no alias.
pub fn table_named(name: ObjectName) -> TableFactor {
    TableFactor::Table {
        name,
        alias: None,
        args: None,
        with_hints: Vec::new(),
        version: None,
        with_ordinality: false,
        partitions: Vec::new(),
        json_path: None,
        sample: None,
        index_hints: Vec::new(),
    }
}

/// `a AND b`, each bracketed.
pub fn and(a: Expr, b: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(Expr::Nested(Box::new(a))),
        op: BinaryOperator::And,
        right: Box::new(Expr::Nested(Box::new(b))),
    }
}

/// `a = b`.
pub fn eq(a: Expr, b: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::Eq,
        right: Box::new(Expr::Nested(Box::new(b))),
    }
}

/// `TRUE`.
pub fn truth() -> Expr {
    Expr::Value(Value::Boolean(true).with_empty_span())
}

/// `SELECT projection FROM from [WHERE selection]`.
pub fn select(
    projection: Vec<SelectItem>,
    from: Vec<TableWithJoins>,
    selection: Option<Expr>,
) -> Statement {
    let select = Select {
        select_token: AttachedToken::empty(),
        optimizer_hints: Vec::new(),
        distinct: None,
        select_modifiers: None,
        top: None,
        top_before_distinct: false,
        projection,
        exclude: None,
        into: None,
        from,
        lateral_views: Vec::new(),
        prewhere: None,
        selection,
        connect_by: Vec::new(),
        group_by: GroupByExpr::Expressions(Vec::new(), Vec::new()),
        cluster_by: Vec::new(),
        distribute_by: Vec::new(),
        sort_by: Vec::new(),
        having: None,
        named_window: Vec::new(),
        qualify: None,
        window_before_qualify: false,
        value_table_mode: None,
        flavor: SelectFlavor::Standard,
    };
    Statement::Query(Box::new(Query {
        with: None,
        body: Box::new(SetExpr::Select(Box::new(select))),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: Vec::new(),
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: Vec::new(),
    }))
}

/// One table factor, no joins.
pub fn from(relation: TableFactor) -> Vec<TableWithJoins> {
    vec![TableWithJoins {
        relation,
        joins: Vec::new(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_what_the_parser_would() {
        let stmt = select(
            vec![
                named(column("Body"), "b"),
                SelectItem::UnnamedExpr(column("_seq")),
            ],
            from(table(&["app", "t"])),
            Some(and(eq(column("id"), truth()), truth())),
        );
        assert_eq!(
            stmt.to_string(),
            r#"SELECT "Body" AS "b", "_seq" FROM "app"."t" WHERE ("id" = (true)) AND (true)"#
        );
    }
}
