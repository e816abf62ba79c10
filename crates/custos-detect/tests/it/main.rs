//! Integration tests of custos-detect: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accuracy;
mod column;
mod detectors;
mod eval;
mod props;
