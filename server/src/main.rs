//! The `quilldb` binary.

use clap::{Parser, Subcommand};
use quilldb_server::config::{Config, ServeArgs};
use quilldb_server::{lifecycle, version_line};
use tracing_subscriber::EnvFilter;

/// mimalloc hands freed memory back to the system within milliseconds; glibc's allocator keeps
/// the high-water mark of its arenas, so after one large query the process stayed hundreds of
/// MiB above its idle figure for good.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// QuillDB: a real-time SQL database that speaks Arrow Flight SQL.
#[derive(Debug, Parser)]
#[command(name = "quilldb", version = quilldb_server::VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print the version, the git commit and the build date.
    Version,
    /// The SQL shell: run statements against a server, interactively or from -c / -f.
    Sql(quilldb_cli::SqlArgs),
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("{}", version_line()),
        Command::Sql(args) => std::process::exit(quilldb_cli::main(args)),
        Command::Serve(args) => {
            let config = match Config::load(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("quilldb: {e}");
                    std::process::exit(2);
                }
            };
            let filter =
                EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            tracing::info!("{}", version_line());
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .thread_stack_size(quilldb_server::exec::THREAD_STACK_BYTES)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("quilldb: starting the runtime: {e}");
                    std::process::exit(1);
                }
            };
            if let Err(e) = runtime.block_on(lifecycle::serve(config)) {
                tracing::error!(error = %e, "server failed");
                eprintln!("quilldb: {e}");
                std::process::exit(1);
            }
        }
    }
}
