#!/usr/bin/env bash
# Builds custos and runs the example pipeline on the embedded defaults (local files, SQLite
# state store) in ./quickstart (or the directory given as $1).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/scripts/env.sh"
dir="${1:-$root/quickstart}"

echo "== building custos (first build compiles DataFusion: several minutes on 2 cores)"
# Same targets as scripts/test.sh, so both resolve identical dependency features and share one
# DataFusion build (building the binary alone would unify features differently and rebuild).
cargo build --manifest-path "$root/Cargo.toml" --workspace --lib --bins --tests

mkdir -p "$dir"
cd "$dir"
# The example protects its data with keys from a local encrypted keystore. The passphrase is
# read by reference; this demo value is for the quickstart only: use your own (or
# CUSTOS_KEYSTORE_PASSPHRASE_FILE) for real data.
export CUSTOS_KEYSTORE_PASSPHRASE="${CUSTOS_KEYSTORE_PASSPHRASE:-quickstart-demo-passphrase}"
# A fresh demo each time: earlier state (users, audit log, keystore) and outputs are removed.
rm -rf .custos out policies
echo "== custos init $dir (creates the first admin; its token goes to .custos/admin.token)"
"$CUSTOS_BIN" init --force --admin-token-file .custos/admin.token .
echo "== as admin: add the data engineer 'etl' and a second security admin 'sec'"
export CUSTOS_TOKEN_FILE=.custos/admin.token
"$CUSTOS_BIN" users add etl --role data_engineer --token-file .custos/etl.token
"$CUSTOS_BIN" users add sec --role security_admin --token-file .custos/sec.first-token
echo "== as sec: rotate the token admin handed over, then grant etl one hour of decryption"
echo "   (a grant needs a second person who never saw the grantee's token)"
CUSTOS_TOKEN_FILE=.custos/sec.first-token "$CUSTOS_BIN" tokens rotate --token-file .custos/sec.token
rm -f .custos/sec.first-token
CUSTOS_TOKEN_FILE=.custos/sec.token "$CUSTOS_BIN" grants add etl decrypt_column \
  --on pipeline:customers-decrypt --until +1h \
  --reason "quickstart: show that the protected output decrypts back"
export CUSTOS_TOKEN_FILE=.custos/etl.token
echo "== as etl: custos scan data/customers.csv"
"$CUSTOS_BIN" scan data/customers.csv
echo "== custos validate pipeline.toml"
"$CUSTOS_BIN" validate pipeline.toml
echo "== custos run pipeline.toml"
"$CUSTOS_BIN" run pipeline.toml
echo "== custos run decrypt.toml (reverses the encrypted columns; plaintext allowed by [danger])"
"$CUSTOS_BIN" run decrypt.toml
echo "== custos runs list"
"$CUSTOS_BIN" runs list -n 5
echo "== as admin: custos audit verify (every decision above is in the tamper-evident log)"
CUSTOS_TOKEN_FILE=.custos/admin.token "$CUSTOS_BIN" audit verify
echo
echo "binary: $CUSTOS_BIN"
echo "quarantined rows (mode 0600): see the quarantine path above"
