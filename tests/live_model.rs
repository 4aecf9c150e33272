//! The randomized model test of live queries: random inserts, updates and deletes by several
//! users, flushes between them, subscribers with different filters and projections, some of
//! them dropping their connection and resuming with `from`. At the end each subscriber's view,
//! folded from its messages, equals a SELECT with its filter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{Array, Int8Array, Int64Array};
use quilldb_flight::EventKind;
use quilldb_tests::{Backend, Client, Live};

/// xorshift64*: the same sequence every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Subscriber {
    filter: &'static str,
    select: &'static str,
    live: Option<Live>,
    /// id -> v, as folded from the messages.
    view: BTreeMap<i64, Option<i64>>,
    last_seq: i64,
    resumes: usize,
}

impl Subscriber {
    fn sql(&self) -> String {
        let mut sql = format!("SUBSCRIBE TO SELECT {} FROM app.m", self.select);
        if !self.filter.is_empty() {
            sql.push_str(&format!(" WHERE {}", self.filter));
        }
        if self.last_seq > 0 {
            sql.push_str(&format!(
                " OPTIONS (from = {}, batch_size = 7)",
                self.last_seq
            ));
        } else {
            sql.push_str(" OPTIONS (batch_size = 7)");
        }
        sql
    }

    /// Applies every message that arrives within `wait` of the previous one.
    async fn drain(&mut self, wait: Duration) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        while let Some((event, batch)) = live.next_within(wait).await {
            let kind = EventKind::try_from(event.kind).unwrap();
            assert!(
                !matches!(kind, EventKind::Closed | EventKind::Error),
                "{} ended: {event:?}",
                self.filter
            );
            if let Some(b) = batch {
                let ids = b.column_by_name("id").unwrap();
                let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
                let ops = b.column_by_name("_op").unwrap();
                let ops = ops.as_any().downcast_ref::<Int8Array>().unwrap();
                let vs = b
                    .column_by_name("v")
                    .map(|c| c.as_any().downcast_ref::<Int64Array>().unwrap().clone());
                // A subscription that never resumed gets exact changes: an insert only of a
                // key it does not hold, an update or a delete only of one it holds (a resumed
                // catch-up cannot know what the client held, so it may send either).
                let exact = self.resumes == 0;
                for i in 0..b.num_rows() {
                    let id = ids.value(i);
                    let (op, held) = (ops.value(i), self.view.contains_key(&id));
                    assert!(
                        !exact || op == 0 || (op == 1) != held,
                        "{}: op {op} of id {id}, held: {held}",
                        self.filter
                    );
                    match op {
                        3 => {
                            self.view.remove(&id);
                        }
                        _ => {
                            let v = vs.as_ref().filter(|v| v.is_valid(i)).map(|v| v.value(i));
                            self.view.insert(id, v);
                        }
                    }
                }
            }
            assert!(event.last_seq >= self.last_seq, "last_seq went back");
            self.last_seq = event.last_seq;
        }
    }
}

async fn expected(c: &mut Client, s: &Subscriber) -> BTreeMap<i64, Option<i64>> {
    let mut sql = format!("SELECT {} FROM app.m", s.select);
    if !s.filter.is_empty() {
        sql.push_str(&format!(" WHERE {}", s.filter));
    }
    let mut out = BTreeMap::new();
    for b in c.rows(&sql).await {
        let ids = b.column_by_name("id").unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        let vs = b
            .column_by_name("v")
            .map(|c| c.as_any().downcast_ref::<Int64Array>().unwrap().clone());
        for i in 0..b.num_rows() {
            let v = vs.as_ref().filter(|v| v.is_valid(i)).map(|v| v.value(i));
            out.insert(ids.value(i), v);
        }
    }
    out
}

#[tokio::test]
async fn folded_views_equal_their_queries_after_random_changes_flushes_and_resumes() {
    random_changes_flushes_and_resumes(Backend::Cold).await;
}

/// The same with the cold files, read back for prior rows and resumes, in a bucket.
#[tokio::test]
async fn the_same_with_cold_files_on_s3() {
    random_changes_flushes_and_resumes(Backend::S3Cold).await;
}

async fn random_changes_flushes_and_resumes(b: Backend) {
    let server = b
        .server_with(&[("QUILLDB_STORAGE__AUTO_COMPACT_SEGMENTS", "4")])
        .await;
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok("CREATE TABLE app.m (id BIGINT PRIMARY KEY, v BIGINT, note TEXT)")
        .await;
    let mut writers = vec![server.client().await];
    for u in ["w1", "w2", "w3"] {
        root.ok(&format!(
            "CREATE USER {u} WITH PASSWORD 'password-{u}' ROLE service"
        ))
        .await;
        writers.push(server.client_as(u, &format!("password-{u}")).await.unwrap());
    }
    let token = root.inner.token().cloned().unwrap();
    let mut subs: Vec<Subscriber> = [
        ("", "id, v"),
        ("v > 50", "id, v"),
        ("v % 3 = 0", "*"),
        ("v BETWEEN 20 AND 60 AND note <> 'x'", "id"),
    ]
    .into_iter()
    .map(|(filter, select)| Subscriber {
        filter,
        select,
        live: None,
        view: BTreeMap::new(),
        last_seq: 0,
        resumes: 0,
    })
    .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ids: Vec<i64> = Vec::new();
    let mut next_id = 1;
    let short = Duration::from_millis(20);
    for s in subs.iter_mut() {
        s.live = Some(
            server
                .subscribe(Some(&token), &s.sql(), None)
                .await
                .unwrap(),
        );
    }
    for step in 0..600 {
        let w = &mut writers[rng.below(4) as usize];
        let v = rng.below(100) as i64;
        let note = if rng.below(4) == 0 { "x" } else { "y" };
        match rng.below(10) {
            0..=3 => {
                let id = next_id;
                next_id += 1;
                w.ok(&format!("INSERT INTO app.m VALUES ({id}, {v}, '{note}')"))
                    .await;
                ids.push(id);
            }
            4..=6 if !ids.is_empty() => {
                let id = ids[rng.below(ids.len() as u64) as usize];
                w.ok(&format!(
                    "UPDATE app.m SET v = {v}, note = '{note}' WHERE id = {id}"
                ))
                .await;
            }
            7 if !ids.is_empty() => {
                let id = ids.swap_remove(rng.below(ids.len() as u64) as usize);
                w.ok(&format!("DELETE FROM app.m WHERE id = {id}")).await;
            }
            8 => {
                // Several rows in one transaction arrive together, at COMMIT.
                w.ok("BEGIN").await;
                for _ in 0..3 {
                    let id = next_id;
                    next_id += 1;
                    w.ok(&format!("INSERT INTO app.m VALUES ({id}, {v}, '{note}')"))
                        .await;
                    ids.push(id);
                }
                if let Some(id) = ids.first().copied() {
                    w.ok(&format!("UPDATE app.m SET v = v + 1 WHERE id = {id}"))
                        .await;
                }
                w.ok("COMMIT").await;
            }
            _ => {}
        }
        if step % 97 == 50 {
            root.flush("app.m").await;
        }
        // Now and then a subscriber loses its connection and resumes from its last _seq.
        if step % 61 == 30 {
            let s = &mut subs[rng.below(4) as usize];
            s.drain(short).await;
            s.live = None;
            // Changes made while it is away come back with `from`.
            writers[0]
                .ok(&format!("INSERT INTO app.m VALUES ({next_id}, 33, 'y')"))
                .await;
            ids.push(next_id);
            next_id += 1;
            s.live = Some(
                server
                    .subscribe(Some(&token), &s.sql(), None)
                    .await
                    .unwrap(),
            );
            s.resumes += 1;
        }
        if step % 10 == 0 {
            for s in subs.iter_mut() {
                s.drain(Duration::from_millis(1)).await;
            }
        }
    }
    for s in subs.iter_mut() {
        s.drain(Duration::from_millis(500)).await;
    }
    assert!(subs.iter().map(|s| s.resumes).sum::<usize>() >= 5);
    for s in &subs {
        let want = expected(&mut root, s).await;
        assert!(!want.is_empty() || s.filter.contains("BETWEEN"));
        assert_eq!(s.view, want, "subscriber {:?} / {:?}", s.filter, s.select);
    }
}
