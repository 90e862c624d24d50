//! The demo chat at `/demo` (`--demo`, on by default in development mode): the page, its
//! script and the SDK bundle of `clients/js`, embedded at build time. The bundle is the
//! committed `clients/js/dist/ringcast-client.min.js`, so building ringcast needs no Node;
//! `npm run check` in `clients/js` (run by `.ci/test`) fails when it is not the SDK's source.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::respond::{error, Body};

const INDEX: &str = include_str!("../clients/js/demo/index.html");
const SCRIPT: &str = include_str!("../clients/js/demo/demo.js");
const SDK: &str = include_str!("../clients/js/dist/ringcast-client.min.js");

/// The page may load only itself and talk WebSocket to any node (the `servers` it is given).
const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'";

/// Answers `GET /demo` and `GET /demo/{file}`.
pub fn serve(enabled: bool, path: &str) -> Response<Body> {
    if !enabled {
        return error(StatusCode::NOT_FOUND, "the demo is off (start with --demo true)");
    }
    let (body, content_type) = match path {
        "/demo" | "/demo/" | "/demo/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/demo/demo.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/demo/ringcast-client.js" => (SDK, "text/javascript; charset=utf-8"),
        _ => return error(StatusCode::NOT_FOUND, "no such demo file"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_demo_files_and_switch() {
        let page = serve(true, "/demo");
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(INDEX.contains("/demo/demo.js") && SCRIPT.contains("/demo/ringcast-client.js"));
        assert!(SDK.contains("auth.refresh"), "the bundle is the SDK");
        assert_eq!(serve(true, "/demo/ringcast-client.js").status(), StatusCode::OK);
        assert_eq!(serve(true, "/demo/../etc/passwd").status(), StatusCode::NOT_FOUND);
        assert_eq!(serve(false, "/demo").status(), StatusCode::NOT_FOUND);
    }
}
