//! Writes each target's seeds into `<dir>/<target>/seed-<n>` (default dir: fuzz/corpus), the
//! corpora `cargo fuzz run` starts from.

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".to_string());
    for (target, _) in quilldb_fuzzing::TARGETS {
        let folder = std::path::Path::new(&dir).join(target);
        if let Err(e) = std::fs::create_dir_all(&folder) {
            eprintln!("{}: {e}", folder.display());
            std::process::exit(1);
        }
        for (i, seed) in quilldb_fuzzing::seeds::seeds(target).iter().enumerate() {
            let path = folder.join(format!("seed-{i}"));
            if let Err(e) = std::fs::write(&path, seed) {
                eprintln!("{}: {e}", path.display());
                std::process::exit(1);
            }
        }
        println!("{target}: seeds in {}", folder.display());
    }
}
