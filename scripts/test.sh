#!/usr/bin/env bash
# Installs what the tests need and runs every check CI runs: formatting, clippy with
# warnings denied, and the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/scripts/env.sh"
cd "$root"

# Prerequisites: the Rust toolchain with rustfmt and clippy (the machine ships rustup).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
