//! Benchmarks for beit-rs live in `benches/` (criterion); this library is empty.
