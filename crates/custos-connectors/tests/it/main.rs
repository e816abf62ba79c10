//! Integration tests of the connectors against real services started by `scripts/test.sh`.
#![allow(clippy::unwrap_used, missing_docs)]

mod pgcopy;
mod postgres;
