//! A real third-party client: Python `websockets` (Debian's `python3-websockets`, installed
//! by `.ci/test`), which offers permessage-deflate by default, runs `tests/python/
//! deflate_client.py` against a server with `--compression on`: in-band and header
//! authentication, a room, messages of several sizes both ways. The server's metrics show that
//! it inflated the client's compressed messages and deflated its own.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// The first Python 3 that has `websockets`: the one on the PATH, else Debian's (a pyenv
/// or venv on the PATH does not see Debian's packages).
fn python() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|python| {
            Command::new(python).args(["-c", "import websockets"]).output().is_ok_and(|out| out.status.success())
        })
        .unwrap_or("python3")
}

/// Runs the script; its one JSON line.
fn run_script(server: &Server) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/deflate_client.py");
    let output = Command::new(python())
        .args([script, &server.ws_url(), &Token::new("alice").sign(), &Token::new("bob").sign()])
        .output()
        .expect("python3 must be installed (.ci/test installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'websockets'"),
        "python3-websockets is missing: apt-get install python3-websockets (.ci/test does)"
    );
    assert!(output.status.success(), "the python client failed: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_python_websockets_negotiates_and_exchanges_compressed_messages() {
    let server = Server::start_with(&["--compression", "on"]);
    let outcome = tokio::task::block_in_place(|| run_script(&server));
    for who in ["alice", "bob"] {
        let header = outcome[who].as_str().unwrap_or_else(|| panic!("{who} negotiated nothing: {outcome}"));
        assert_eq!(header, "permessage-deflate; server_no_context_takeover");
    }
    assert_eq!(outcome["extensions"][0], "PerMessageDeflate", "{outcome}");
    // Every message over the minimum went compressed both ways: 4 sizes of 6 are, each sent
    // twice, so at least 8 were inflated; the server deflated at least the deliveries.
    assert!(metric(&server, "ringcast_frames_inflated_total").await >= 8);
    assert!(metric(&server, "ringcast_frames_compressed_total").await >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_python_websockets_works_uncompressed_with_compression_off() {
    let server = Server::start_with(&["--compression", "off"]);
    let outcome = tokio::task::block_in_place(|| run_script(&server));
    assert_eq!(outcome["alice"], Value::Null, "{outcome}");
    assert_eq!(outcome["extensions"], serde_json::json!([]));
    assert_eq!(metric(&server, "ringcast_frames_inflated_total").await, 0);
    assert_eq!(metric(&server, "ringcast_frames_compressed_total").await, 0);
}
