//! The permission matrix of spec/security.md, cell by cell, through Flight SQL: every row of
//! `data/matrix.tsv` is tried as every role, allowed and denied. The Python tests run the same
//! file through the ADBC driver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quilldb_tests::{Client, TestServer, id_v_batch, to_status};
use tonic::Code;

const MATRIX: &str = include_str!("data/matrix.tsv");
const ROLES: [&str; 5] = ["anonymous", "user", "service", "dba", "system"];
const PASSWORD: &str = "matrix-password";

/// One line of the matrix file.
struct Row<'a> {
    kind: &'a str,
    call: &'a str,
    text: &'a str,
    allowed: Vec<&'a str>,
    code: &'a str,
}

fn rows() -> Vec<Row<'static>> {
    MATRIX
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                kind: f[0],
                call: f[1],
                text: f[2],
                allowed: f.get(3).map(|a| a.split(',').collect()).unwrap_or_default(),
                code: f.get(4).copied().unwrap_or("OK"),
            }
        })
        .collect()
}

fn expand(text: &str, rank: usize, data: &std::path::Path) -> String {
    let role = ROLES[rank];
    text.replace("{r}", role)
        .replace("{data}", &data.display().to_string())
        .replace("{me}", &format!("m_{role}"))
        .replace("{n}", &(100 + rank).to_string())
}

fn code_name(code: Code) -> String {
    format!("{code:?}")
        .chars()
        .fold(String::new(), |mut out, ch| {
            if ch.is_uppercase() && !out.is_empty() {
                out.push('_');
            }
            out.push(ch.to_ascii_uppercase());
            out
        })
}

async fn run(c: &mut Client, call: &str, text: &str, rank: usize) -> Result<(), tonic::Status> {
    match call {
        "sql" => c.query(text).await.map(|_| ()),
        "prepare" => {
            let mut p = c
                .inner
                .prepare(text.to_string(), None)
                .await
                .map_err(to_status)?;
            if text.starts_with("SELECT") {
                let info = p.execute().await.map_err(to_status)?;
                c.fetch(info).await.map(|_| ())
            } else {
                p.execute_update().await.map(|_| ()).map_err(to_status)
            }
        }
        "ingest" => {
            let (ns, table) = text.split_once('.').expect("ns.table");
            let batch = id_v_batch(&[1000 + rank as i64], |_| "ingested".into());
            c.ingest(ns, table, vec![batch], None).await.map(|_| ())
        }
        other => panic!("unknown call {other}"),
    }
}

#[tokio::test]
async fn every_cell_of_the_permission_matrix_holds() {
    let server = TestServer::start().await;
    let data = server.data_dir();
    let mut root = server.client().await;
    let rows = rows();
    for row in rows.iter().filter(|r| r.kind == "setup") {
        if row.text.contains("{r}") {
            for rank in 0..ROLES.len() {
                root.ok(&expand(row.text, rank, &data)).await;
            }
        } else {
            root.ok(row.text).await;
        }
    }
    let mut clients = Vec::new();
    for role in ROLES {
        clients.push(match role {
            "anonymous" => server.anonymous().await,
            r => server.client_as(&format!("m_{r}"), PASSWORD).await.unwrap(),
        });
    }
    let mut wrong = Vec::new();
    let mut cells = 0;
    for row in rows.iter().filter(|r| r.kind == "cell") {
        for (rank, role) in ROLES.iter().enumerate() {
            let text = expand(row.text, rank, &data);
            let expected = if row.allowed.contains(role) {
                row.code.to_string()
            } else {
                "PERMISSION_DENIED".to_string()
            };
            let (got, message) = match run(&mut clients[rank], row.call, &text, rank).await {
                Ok(()) => ("OK".to_string(), String::new()),
                Err(s) => (code_name(s.code()), s.message().to_string()),
            };
            cells += 1;
            if got != expected {
                wrong.push(format!(
                    "{role:9} {} {text}: expected {expected}, got {got} {message}",
                    row.call
                ));
            }
        }
    }
    assert!(cells >= 300, "only {cells} cells");
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells differ from the matrix:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
