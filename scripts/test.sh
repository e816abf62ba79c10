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

# Python tools for the data generator and the PyArrow interop test, and the generated data.
. "$root/scripts/pydeps.sh"

# Throwaway PostgreSQL servers (TLS with test-time certificates, and a plaintext one) for the
# connector tests; stopped by custos_pg_stop on exit.
. "$root/scripts/pg.sh"
export CUSTOS_PG_REQUIRED=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
log="$(mktemp)"
trap 'rm -f "$log"; custos_pg_stop' EXIT
set +e
cargo test --workspace --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"
[ "$status" -eq 0 ] || exit "$status"

# The server's API fuzzed from its OpenAPI document (bounded): no request gets a 5xx.
. "$root/scripts/api_fuzz.sh"

# The benchmark harness in quick mode (10k rows): every scenario runs through the real CLI and
# the decrypt round trip matches the input. No timing is asserted.
echo "== bench/run.py --quick"
bench_json="$(mktemp)"
trap 'rm -f "$log" "$bench_json"; custos_pg_stop' EXIT
CUSTOS_BIN="$CUSTOS_BIN" "$CUSTOS_PYTHON" bench/run.py --quick --json "$bench_json"
"$CUSTOS_PYTHON" - "$bench_json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
want = ["copy", "encrypt6", "tokenize6", "mask6", "fpe2", "redact_notes", "protect_mixed", "mixed_uncompressed", "decrypt6", "pg_load", "pg_unload"]
got = [x["scenario"] for x in r["results"]]
assert got == want, f"bench scenarios {got} != {want}"
d = [x for x in r["results"] if x["scenario"] == "decrypt6"][0]
assert d["round_trip_rows_checked"] == r["rows"] == 10000, d
assert all(x["rows"] == 10000 for x in r["results"]), r["results"]
# DuckDB (a requirement of the venv) is timed on the same file and custos compared with it.
assert r.get("duckdb_copy_s", 0) > 0, "no DuckDB comparison"
ratios = {x["scenario"]: x.get("time_vs_duckdb_copy") for x in r["results"]}
assert ratios["copy"] and ratios["protect_mixed"], ratios
print("bench quick mode: every scenario ran, decrypt check passed, DuckDB compared")
PY

# PostgreSQL at scale: 1M generated rows loaded (binary COPY, one transaction) and unloaded to
# Parquet through the CLI; both must stream with bounded memory. No timing is asserted.
echo "== bench/run.py --rows 1000000 --only pg_load,pg_unload"
pg_json="$(mktemp)"
trap 'rm -f "$log" "$bench_json" "$pg_json"; custos_pg_stop' EXIT
CUSTOS_BIN="$CUSTOS_BIN" "$CUSTOS_PYTHON" bench/run.py --rows 1000000 --only pg_load,pg_unload --json "$pg_json"
"$CUSTOS_PYTHON" - "$pg_json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
got = {x["scenario"]: x for x in r["results"]}
assert set(got) == {"pg_load", "pg_unload"}, got
for name, x in got.items():
    assert x["rows"] == 1_000_000 and x["rows_written"] == 1_000_000, x
    assert x["peak_rss_mib"] < 512, f"{name}: peak RSS {x['peak_rss_mib']} MiB is not bounded"
print("1M rows through PostgreSQL: load and unload streamed in "
      + ", ".join(f"{n} {x['peak_rss_mib']} MiB" for n, x in sorted(got.items())))
PY
