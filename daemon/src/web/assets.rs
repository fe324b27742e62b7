//! The dashboard's pages (web-ui/), embedded in the binary: URL path,
//! content type, bytes. One entry per shipped file; nothing else is served
//! from web-ui/, and nothing is read from disk at run time.

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

pub const ASSETS: &[(&str, &str, &[u8])] = &[
    ("/", HTML, include_bytes!("../../../web-ui/index.html")),
    ("/app.css", CSS, include_bytes!("../../../web-ui/app.css")),
    ("/favicon.svg", SVG, include_bytes!("../../../web-ui/favicon.svg")),
    ("/app.js", JS, include_bytes!("../../../web-ui/app.js")),
    ("/api.js", JS, include_bytes!("../../../web-ui/api.js")),
    ("/dom.js", JS, include_bytes!("../../../web-ui/dom.js")),
    ("/auth.js", JS, include_bytes!("../../../web-ui/auth.js")),
    ("/home.js", JS, include_bytes!("../../../web-ui/home.js")),
    ("/devices.js", JS, include_bytes!("../../../web-ui/devices.js")),
    ("/security.js", JS, include_bytes!("../../../web-ui/security.js")),
    ("/privacy.js", JS, include_bytes!("../../../web-ui/privacy.js")),
    (
        "/integrations.js",
        JS,
        include_bytes!("../../../web-ui/integrations.js"),
    ),
    ("/voice.js", JS, include_bytes!("../../../web-ui/voice.js")),
    ("/matter.js", JS, include_bytes!("../../../web-ui/matter.js")),
    ("/dns.js", JS, include_bytes!("../../../web-ui/dns.js")),
];

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// Every file in web-ui/ (except its README) is shipped, and every
    /// module a page imports is in the table: a file added to web-ui/ and
    /// forgotten here would be a 404 in the browser.
    #[test]
    fn every_web_ui_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-ui");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("web-ui/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name != "README.md")
            .map(|name| {
                if name == "index.html" {
                    "/".to_owned()
                } else {
                    format!("/{name}")
                }
            })
            .collect();
        on_disk.sort();
        let mut shipped: Vec<String> = ASSETS.iter().map(|(path, ..)| (*path).to_owned()).collect();
        shipped.sort();
        assert_eq!(on_disk, shipped);
        for (path, _, bytes) in ASSETS {
            let text = std::str::from_utf8(bytes).expect("UTF-8");
            for line in text.lines() {
                let line = line.trim_start();
                if let Some(rest) = line
                    .strip_prefix("import ")
                    .and_then(|r| r.split(" from '").nth(1))
                {
                    let module = rest.split('\'').next().expect("quoted");
                    let target = format!("/{}", module.trim_start_matches("./"));
                    assert!(
                        ASSETS.iter().any(|(p, ..)| *p == target),
                        "{path} imports {module}, which is not embedded"
                    );
                }
            }
        }
    }
}
