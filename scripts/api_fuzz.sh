# Sourced by scripts/test.sh after the test suite: a bounded fuzz run of the server's API from
# its own OpenAPI document (schemathesis, pinned, in its own venv). A real `custos serve` on a
# loopback port with a fresh project; every generated request must get an answer that is not
# a server error (5xx). Then the audit log of the run must still verify.
fuzz_venv="${CUSTOS_CACHE:-$HOME/.cache/custos}/venv-fuzz"
if [ ! -x "$fuzz_venv/bin/schemathesis" ] || ! "$fuzz_venv/bin/schemathesis" --version 2>/dev/null | grep -q "4.32.5"; then
  echo "== python venv for the API fuzz run ($fuzz_venv)"
  python3 -m venv "$fuzz_venv"
  "$fuzz_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi

fuzz_dir="$(mktemp -d)"
fuzz_pid=""
custos_fuzz_stop() {
  if [ -n "$fuzz_pid" ]; then
    kill -TERM "$fuzz_pid" 2>/dev/null || true
    wait "$fuzz_pid" 2>/dev/null || true
    fuzz_pid=""
  fi
}
(
  set -euo pipefail
  cd "$fuzz_dir"
  export CUSTOS_KEYSTORE_PASSPHRASE="fuzz-run-passphrase"
  "$CUSTOS_BIN" init --no-example --admin-token-file admin.token . >/dev/null
  # A keystore, so the server seals the identity store and signs audit checkpoints.
  CUSTOS_TOKEN_FILE=admin.token "$CUSTOS_BIN" keys init --kdf-memory-mib 8 --kdf-iterations 1 >/dev/null
  mkdir -p data
  port="$("$CUSTOS_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  # Plain HTTP on loopback only (the danger switch), and no second factor, so the fuzzer
  # reaches the operations behind step-up too.
  cat > server.toml <<EOF
[server]
listen = "127.0.0.1:$port"
state_dir = ".custos"

[keystore]
passphrase = "\${env:CUSTOS_KEYSTORE_PASSPHRASE}"

[auth]
mfa = "off"

[pipelines]
roots = ["data"]

[danger]
plaintext = true
EOF
  "$CUSTOS_BIN" serve --config server.toml 2> server.log &
  echo $! > server.pid
  for _ in $(seq 1 100); do
    if "$CUSTOS_PYTHON" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/healthz')" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  echo "$port" > port
)
fuzz_pid="$(cat "$fuzz_dir/server.pid")"
fuzz_port="$(cat "$fuzz_dir/port")"
echo "== API fuzz run: schemathesis against custos serve on 127.0.0.1:$fuzz_port"
# Rotating the admin's own token would sign the fuzzer out; those two operations are covered
# by the server's tests instead.
set +e
# Run from the scratch directory: schemathesis keeps a cache in the working directory.
(cd "$fuzz_dir" && "$fuzz_venv/bin/schemathesis" run "http://127.0.0.1:$fuzz_port/v1/openapi.json" \
  --header "Authorization: Bearer $(cat "$fuzz_dir/admin.token")" \
  --checks not_a_server_error \
  --exclude-operation-id rotate_own_token \
  --exclude-operation-id rotate_user_token \
  --phases examples,coverage,fuzzing \
  --max-examples 30 --max-time 150 --seed 424242 \
  --generation-database none --workers 1 --no-color \
  --report junit --report-dir "$fuzz_dir/report")
fuzz_status=$?
set -e
custos_fuzz_stop
if [ "$fuzz_status" -ne 0 ]; then
  echo "API fuzz run failed (server log follows)"
  tail -n 50 "$fuzz_dir/server.log"
  exit "$fuzz_status"
fi
if grep -q '"level":"ERROR"' "$fuzz_dir/server.log"; then
  echo "the server logged errors during the fuzz run:"
  grep '"level":"ERROR"' "$fuzz_dir/server.log" | head -n 20
  exit 1
fi
(cd "$fuzz_dir" && CUSTOS_KEYSTORE_PASSPHRASE="fuzz-run-passphrase" CUSTOS_TOKEN_FILE=admin.token "$CUSTOS_BIN" audit verify)
rm -rf "$fuzz_dir"
