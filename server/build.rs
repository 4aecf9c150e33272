//! Embeds the git commit and the build date into the binary, and the web console's built
//! assets (`console/dist`, made by `scripts/build-console.sh`) as a table of files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The files under `dir`, sorted, as paths relative to it.
fn files(dir: &Path, under: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, under, out);
        } else if let Ok(rel) = path.strip_prefix(under) {
            out.push(rel.to_path_buf());
        }
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "map" | "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Writes `console_assets.rs`: `ASSETS`, one `(path, content type, bytes)` per built file.
/// Without a build (no Node.js yet) the table is empty and the server says how to build it.
fn console_assets() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let console = manifest.join("../console");
    let dist = console.join("dist");
    // A directory is watched with everything in it: the build appears or changes.
    let watched = if dist.is_dir() { &dist } else { &console };
    println!("cargo:rerun-if-changed={}", watched.display());
    let mut found = Vec::new();
    files(&dist, &dist, &mut found);
    let mut code = String::from("pub static ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for rel in found {
        let name = rel.to_string_lossy().replace('\\', "/");
        let abs = dist.join(&rel);
        code.push_str(&format!(
            "    ({name:?}, {:?}, include_bytes!({:?})),\n",
            content_type(&rel),
            abs.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out.join("console_assets.rs"), code) {
        println!("cargo:warning=writing console_assets.rs: {e}");
    }
}

fn main() {
    let commit =
        run("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let date = run("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=QUILLDB_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=QUILLDB_BUILD_DATE={date}");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    println!("cargo:rerun-if-changed=build.rs");
    console_assets();
}
