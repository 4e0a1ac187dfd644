//! The operator console: one page of plain ES modules (the repository's `console/` folder,
//! no build step), embedded in the binary and served at `/` and `/console/{file}`. The page
//! talks to the public API and `/ws` only, with the key from the browser's session storage.

use poem::http::header;
use poem::web::Path;
use poem::{Response, handler};

use super::error::ApiError;

/// One embedded file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// An [`Asset`] of the `console/` folder by file name, with its content type.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_str!(concat!("../../console/", $name)),
        }
    };
}

/// Every file of the console, by name; the page first.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("cameras.js", JS),
    asset!("incidents.js", JS),
    asset!("people.js", JS),
    asset!("search.js", JS),
    asset!("system.js", JS),
];

/// The console's Content-Security-Policy: scripts, styles, requests and WebSockets to this
/// server only; pictures and clips also from the `blob:` URLs the page makes of what it
/// fetched with its key, and from `media_origin` (the bucket, when media URLs are presigned
/// by it). No inline script or style attribute, no frames, no forms posted elsewhere.
pub fn csp(media_origin: Option<&str>) -> String {
    let extra = media_origin.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; \
         img-src 'self' blob: data:{extra}; media-src 'self' blob:{extra}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Whether `path` is one of the console's (they get [`csp`] instead of the API's).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path.starts_with("/console/")
}

fn serve(asset: &Asset) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, asset.content_type)
        // Always asked again: a new binary serves a new console.
        .header(header::CACHE_CONTROL, "no-cache")
        .body(asset.body)
}

/// `GET /`: the console's page.
pub fn page() -> Response {
    serve(&ASSETS[0])
}

/// `GET /console/{file}`: its scripts and stylesheet.
#[handler]
pub fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    find(&name).map(serve).ok_or_else(|| {
        ApiError::not_found("NOT_FOUND", format!("the console has no file `{name}`"))
    })
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module the console imports is embedded, so the page cannot load half.
    #[test]
    fn every_imported_module_is_embedded() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
                let module = line
                    .split("'./")
                    .nth(1)
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or_else(|| panic!("{}: an import not of ./: {line}", asset.name));
                assert!(
                    ASSETS.iter().any(|a| a.name == module),
                    "{} imports {module}, which is not embedded",
                    asset.name
                );
            }
        }
        let index = ASSETS[0].body;
        for asset in &ASSETS[1..3] {
            assert!(
                index.contains(&format!("/console/{}", asset.name)),
                "index.html does not load {}",
                asset.name
            );
        }
    }

    /// The files on disk are all embedded (a new module cannot be forgotten).
    #[test]
    fn every_file_of_the_folder_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "console/{name} is not embedded"
            );
        }
    }

    #[test]
    fn unknown_files_are_404() {
        assert!(find("nope.js").is_none() && find("../Cargo.toml").is_none());
        assert_eq!(find("app.js").unwrap().content_type, JS);
        assert!(is_console_path("/") && is_console_path("/console/app.js"));
        assert!(!is_console_path("/api/v1/cameras"));
    }
}
