//! Tern server library. See `docs/ARCHITECTURE.md` for the map.
pub mod storage;
