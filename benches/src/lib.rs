//! Benchmarks live in `benches/` and `src/bin/`; this library holds what they share.

pub mod relay;
