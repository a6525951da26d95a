//! Benchmarks live in `benches/` and `src/bin/`; this library is empty.
