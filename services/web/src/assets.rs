//! The vendored htmx and stylesheets (see `assets/VENDORED.md`) and the cabinet's own, built
//! into the binary and served with a long cache lifetime: each URL carries the content's hash,
//! so a changed file is a new URL.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/htmx.min.js"),
    },
    Asset {
        name: "modern-normalize.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/modern-normalize.css"),
    },
    Asset {
        name: "cabinet.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/cabinet.css"),
    },
    // The citizen pages (the widget, the appeal page), with the proof of work's SHA-256.
    Asset {
        name: "citizen.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/citizen.css"),
    },
    Asset {
        name: "citizen.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/citizen.js"),
    },
    Asset {
        name: "sha256.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/sha256.min.js"),
    },
];

/// `name` → `name?v=<hash>`, computed once.
static VERSIONED: LazyLock<Vec<(&'static str, String)>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| (a.name, format!("/assets/{}?v={}", a.name, &hex::encode(Sha256::digest(a.body))[..12])))
        .collect()
});

/// The URL of asset `name`, with its content's hash.
pub fn url(name: &str) -> &'static str {
    VERSIONED.iter().find(|(n, _)| *n == name).map_or("/assets/missing", |(_, url)| url.as_str())
}

pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            asset.body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
