//! The web console: the files `scripts/build-console.sh` builds into `console/dist`, embedded
//! in the binary by `build.rs`, served at `/console/` with a Content-Security-Policy that
//! allows the console's own files only (no inline script, no other origin).

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
}

/// What the console's pages may load and connect to: their own origin only (`'self'` covers
/// the same host's WebSocket), no inline script, no frames, no plugins. Style elements need the
/// page's nonce: the editor (CodeMirror) mounts its styles as `<style>` elements. Style
/// attributes are allowed (they run nothing): Chromium's own contenteditable editing writes
/// them as one types into the editor.
fn content_security_policy(nonce: &str) -> String {
    let styles = if nonce.is_empty() {
        String::new()
    } else {
        format!(" 'nonce-{nonce}'")
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'{styles}; \
         style-src-attr 'unsafe-inline'; \
         img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Where index.html takes the nonce.
const NONCE_PLACEHOLDER: &str = "__QUILLDB_CSP_NONCE__";

fn file(path: &str) -> Option<(&'static str, &'static [u8])> {
    assets::ASSETS
        .iter()
        .find(|(name, _, _)| *name == path)
        .map(|(_, ty, bytes)| (*ty, *bytes))
}

fn serve(path: &str) -> Response {
    // Paths without an extension are the console's own routes: its page answers them.
    let wanted = if path.is_empty() || !path.rsplit('/').next().unwrap_or("").contains('.') {
        "index.html"
    } else {
        path
    };
    let Some((content_type, bytes)) = file(wanted) else {
        if assets::ASSETS.is_empty() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the web console was not built into this binary: run scripts/build-console.sh \
                 (Node.js and npm), then build the server again\n",
            )
                .into_response();
        }
        return (StatusCode::NOT_FOUND, format!("no console file {path}\n")).into_response();
    };
    // Built files carry a content hash in their name: they never change under it. The page
    // gets a fresh nonce each time, so it is never cached.
    let (cache, body, nonce) = if wanted == "index.html" {
        let mut raw = [0u8; 18];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
        let nonce = base64::engine::general_purpose::STANDARD.encode(raw);
        let page = String::from_utf8_lossy(bytes).replace(NONCE_PLACEHOLDER, &nonce);
        ("no-store", axum::body::Body::from(page), nonce)
    } else if wanted.starts_with("assets/") {
        let immutable = "public, max-age=31536000, immutable";
        (immutable, axum::body::Body::from(bytes), String::new())
    } else {
        ("no-cache", axum::body::Body::from(bytes), String::new())
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
            (
                header::CONTENT_SECURITY_POLICY,
                content_security_policy(&nonce).as_str(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

/// `/console/...`, and `/` and `/console` leading there.
pub(super) fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { serve("") }))
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>| async move { serve(&path) }),
        )
}
