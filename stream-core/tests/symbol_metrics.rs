//! The process-wide symbol table's size is visible in `/metrics`. Its own test binary (one process,
//! nothing else interning), so the expected counts are exact.

use stream_core::health::Metrics;
use stream_core::symbol::{Sym, stats};

fn gauge(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn symbol_table_size_is_in_metrics() {
    let m = Metrics::default();
    assert_eq!(gauge(&m.encode(), "citybrain_core_symbols"), Some(0));
    // Three distinct ids, one of them twice: three symbols.
    for id in ["L1-b0", "L1", "central", "L1"] {
        Sym::intern(id);
    }
    let text = m.encode();
    assert_eq!(gauge(&text, "citybrain_core_symbols"), Some(3));
    let bytes = gauge(&text, "citybrain_core_symbol_bytes").expect("symbol_bytes gauge");
    // At least the ids' text ("L1-b0" + "L1" + "central" = 14 bytes); the value is the table's own
    // figure.
    assert!(bytes >= 14, "{bytes}");
    assert_eq!(bytes, stats().1 as i64);
}
