//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) and the inputs of crashes
//! that were found and fixed (`fuzz/regressions/<target>/`) through the same entry points the
//! cargo-fuzz targets call, on stable, in every test run: each input must decode or be refused
//! without a panic, and what decodes must encode back to its bytes.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 4] = [
    ("client_frames", ringcast::fuzzing::client_frames),
    ("client_request", ringcast::fuzzing::client_request),
    ("peer_frames", ringcast::fuzzing::peer_frames),
    ("store_records", ringcast::fuzzing::store_records),
];

/// Feeds every file of `dir/<target>/` to its target; returns how many there were.
fn replay(dir: &str, name: &str, target: Target) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir).join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| target(&data));
        assert!(result.is_ok(), "{} panicked on {}", name, path.display());
        count += 1;
    }
    count
}

#[test]
fn test_fuzz_corpus_replays_without_a_panic() {
    for (name, target) in TARGETS {
        let count = replay("corpus", name, target);
        assert!(count > 0, "the corpus of {name} is empty");
        eprintln!("{name}: {count} corpus inputs, {} regressions", replay("regressions", name, target));
    }
}
