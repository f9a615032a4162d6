//! The management web UI: a single page of plain HTML, CSS and JavaScript (`src/server/mgmt/ui/`),
//! compiled into the binary so the broker serves it with nothing to install and nothing
//! fetched from elsewhere. The page talks to the management API under `api/` with HTTP basic
//! auth; the assets themselves carry no secrets, so they are served without authentication.

/// `(content type, bytes)` of one UI asset.
pub type Asset = (&'static str, &'static [u8]);

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every asset by the path the browser asks for. The page links its script and style sheet
/// relatively (`ui/app.js`), so it also works behind a reverse proxy's path prefix.
const ASSETS: &[(&str, Asset)] = &[
    ("/", (HTML, include_bytes!("ui/index.html"))),
    ("/index.html", (HTML, include_bytes!("ui/index.html"))),
    ("/ui/app.js", (JAVASCRIPT, include_bytes!("ui/app.js"))),
    ("/ui/style.css", (CSS, include_bytes!("ui/style.css"))),
];

/// The UI asset for a GET of `path` (without its query string), or `None` when `path` is not
/// part of the UI (the caller answers 404, or routes it elsewhere, e.g. `/api/...`).
pub fn asset(path: &str) -> Option<Asset> {
    ASSETS
        .iter()
        .find(|(candidate, _)| *candidate == path)
        .map(|(_, asset)| *asset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> &'static str {
        std::str::from_utf8(asset("/").expect("index").1).expect("UTF-8 index.html")
    }

    /// The values of every `src="..."` and `href="..."` attribute in `html`.
    fn references(html: &str) -> Vec<&str> {
        ["src=\"", "href=\""]
            .iter()
            .flat_map(|attribute| html.split(attribute).skip(1))
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    #[test]
    fn root_and_index_html_are_the_page() {
        let (content_type, body) = asset("/").expect("/");
        assert_eq!(content_type, HTML);
        assert_eq!(asset("/index.html"), Some((HTML, body)));
        assert!(index().contains("<title>Warren</title>"));
    }

    #[test]
    fn every_asset_the_page_references_resolves() {
        let local: Vec<&str> = references(index())
            .into_iter()
            .filter(|r| !r.starts_with('#') && !r.starts_with("data:"))
            .collect();
        assert!(local.contains(&"ui/app.js") && local.contains(&"ui/style.css"));
        for reference in local {
            let path = format!("/{reference}");
            assert!(asset(&path).is_some(), "expected {path} to be served");
        }
    }

    #[test]
    fn assets_have_their_content_types() {
        assert_eq!(asset("/ui/app.js").map(|a| a.0), Some(JAVASCRIPT));
        assert_eq!(asset("/ui/style.css").map(|a| a.0), Some(CSS));
    }

    #[test]
    fn nothing_is_loaded_from_another_site() {
        for (path, (_, body)) in ASSETS {
            let text = std::str::from_utf8(body).expect("UTF-8 asset");
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "expected {path} to load nothing from elsewhere"
            );
        }
    }

    #[test]
    fn other_paths_are_not_the_ui() {
        for path in [
            "",
            "/api/overview",
            "/ui/",
            "/ui/missing.js",
            "/index.htm",
            "/../Cargo.toml",
        ] {
            assert_eq!(asset(path), None, "{path}");
        }
    }
}
