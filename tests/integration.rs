//! QuillDB's integration tests, one module per area, linked into one test binary. Every test
//! starts the real `quilldb` binary on port 0 in a temporary directory and talks Flight SQL to it.

mod analytics;
mod cold;
mod cold_matrix;
mod crash;
mod durability;
mod flight;
mod hostile;
mod keyless;
mod limits;
mod live;
mod live_matrix;
mod live_model;
mod matrix;
mod point_reads;
mod s3;
mod server;
mod shell;
mod sql_ddl;
mod sql_dml;
mod streams;
mod transactions;
mod user_tables;
mod users;
mod views;
