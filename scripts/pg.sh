# shellcheck shell=bash
# Throwaway PostgreSQL servers for the test suite. SOURCE this file (bash); don't execute it.
#
#   . "$root/scripts/pg.sh"      # starts two private servers, exports CUSTOS_PG_*
#   trap '...; custos_pg_stop' EXIT   # only needed if you replace the EXIT trap afterwards
#
# What it does, all inside one fresh `mktemp -d` directory ($CUSTOS_PG_DIR):
#   * finds initdb/pg_ctl/postgres (PATH, else the highest /usr/lib/postgresql/*/bin), or installs
#     Debian's `postgresql` package. Only the binaries are used: any system cluster (5432,
#     pg_ctlcluster) is neither needed nor touched.
#   * makes TLS material with openssl: a CA, a server cert for DNS:localhost signed by it, a second
#     unrelated CA, and a client cert (CN=custos_cert) signed by the first CA.
#   * initdb's one cluster (scram-sha-256, superuser `custos` with a random password, UTF8, C locale),
#     copies it, and runs:
#       - the TLS server on 127.0.0.1:$CUSTOS_PG_PORT, ssl=on, TLSv1.2+, pg_hba with ONLY
#           hostssl all custos_cert 127.0.0.1/32 cert
#           hostssl all all         127.0.0.1/32 scram-sha-256
#       - the plaintext server on 127.0.0.1:$CUSTOS_PG_PLAIN_PORT, ssl=off, pg_hba with ONLY
#           host    all all         127.0.0.1/32 scram-sha-256
#     No `local` lines: setup itself connects over TCP (verify-full TLS on the TLS server).
#   * creates database custos_test (owner custos) and role custos_cert (LOGIN, no password) on
#     both servers.
#
# Wrong-hostname tests: the server certificate's SAN is ONLY DNS:localhost (no IP entry), so
# connecting to CUSTOS_PG_WRONG_HOST=127.0.0.1 reaches the same server but must fail hostname
# verification under verify-full. (No separate wrong-name certificate is generated.)
#
# Running as root (CI, this machine): initdb/postgres refuse root, so the servers run as the
# `postgres` OS user if it exists, else as a `custos-pg` system user created with useradd
# (override with CUSTOS_PG_OS_USER). The temp dir is made traversable for that user; server
# files live in $CUSTOS_PG_DIR/pg (owned by it), client-side files in $CUSTOS_PG_DIR/tls (owned
# by the caller, keys 0600).
#
# Exports: CUSTOS_PG_HOST CUSTOS_PG_PORT CUSTOS_PG_DB CUSTOS_PG_USER CUSTOS_PG_PASSWORD
#          CUSTOS_PG_CA CUSTOS_PG_OTHER_CA CUSTOS_PG_CLIENT_CERT CUSTOS_PG_CLIENT_KEY
#          CUSTOS_PG_CERT_USER CUSTOS_PG_WRONG_HOST CUSTOS_PG_PLAIN_PORT CUSTOS_PG_DIR
#
# Cleanup: sourcing installs an EXIT trap that runs custos_pg_stop and then whatever EXIT trap
# was set before sourcing. A caller that sets its own EXIT trap AFTER sourcing replaces ours and
# must call custos_pg_stop in it. custos_pg_stop is idempotent and never fails.
# Knobs: CUSTOS_PG_BINDIR (use these binaries), CUSTOS_PG_OS_USER (server user when root),
#        CUSTOS_PG_KEEP=1 (keep the temp dir on stop, for debugging).
# A run that was SIGKILLed leaves its servers behind; the next sourcing stops and removes them.

if [ "${BASH_SOURCE[0]:-$0}" = "$0" ]; then
  echo "scripts/pg.sh must be sourced: . scripts/pg.sh" >&2
  exit 2
fi

# ---------------------------------------------------------------- helpers (no errexit assumed)

_custos_pg_err() { echo "pg.sh: $*" >&2; }

# Runs a command as the server's OS user (or directly when not root), from / so that a
# cwd unreadable by that user (e.g. /root) doesn't upset initdb/pg_ctl.
_custos_pg_as() {
  local u="${_CUSTOS_PG_OS_USER:-}"
  if [ -z "$u" ]; then
    (cd / && "$@")
  elif command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u "$u" -- "$@")
  elif command -v setpriv >/dev/null 2>&1; then
    (cd / && setpriv --reuid="$(id -u "$u")" --regid="$(id -g "$u")" --init-groups -- "$@")
  else
    (cd / && su -s /bin/bash "$u" -c "$(printf '%q ' "$@")")
  fi
}

# Stops the servers under a custos-pg temp dir (immediate mode: the data is thrown away).
_custos_pg_kill_dir() {
  local dir="$1" data user pg_ctl
  pg_ctl="${_CUSTOS_PG_BINDIR:+$_CUSTOS_PG_BINDIR/}pg_ctl"
  for data in "$dir/pg/tls-data" "$dir/pg/plain-data"; do
    [ -f "$data/postmaster.pid" ] || continue
    if [ "$(id -u)" = 0 ]; then
      user="$(stat -c %U "$data" 2>/dev/null)" || continue
      _CUSTOS_PG_OS_USER="$user" _custos_pg_as "$pg_ctl" -D "$data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
    else
      _CUSTOS_PG_OS_USER="" _custos_pg_as "$pg_ctl" -D "$data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
    fi
  done
  return 0
}

# Public: stop both servers and remove the temp dir. Idempotent; always returns 0.
custos_pg_stop() {
  local dir="${CUSTOS_PG_DIR:-}"
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  # Servers started by another shell (CUSTOS_PG_DIR inherited through the environment) are that
  # shell's to stop.
  [ "$(cat "$dir/.custos-pg-owner" 2>/dev/null)" = "$$" ] || return 0
  _custos_pg_kill_dir "$dir" || true
  if [ "${CUSTOS_PG_KEEP:-0}" = 1 ]; then
    echo "pg.sh: servers stopped; kept $dir (CUSTOS_PG_KEEP=1)" >&2
  else
    rm -rf -- "$dir" 2>/dev/null || true
  fi
  return 0
}

# Stops and removes leftovers of earlier runs whose sourcing shell is gone (e.g. SIGKILLed).
_custos_pg_reap_stale() {
  local tmproot="$1" dir pid
  for dir in "$tmproot"/custos-pg.*; do
    [ -f "$dir/.custos-pg-owner" ] && [ -O "$dir/.custos-pg-owner" ] || continue
    [ "$dir" = "${CUSTOS_PG_DIR:-}" ] && continue
    pid="$(cat "$dir/.custos-pg-owner" 2>/dev/null)" || continue
    case "$pid" in '' | *[!0-9]*) continue ;; esac
    kill -0 "$pid" 2>/dev/null && continue
    echo "pg.sh: removing leftover test servers in $dir (owner pid $pid is gone)" >&2
    _custos_pg_kill_dir "$dir"
    rm -rf -- "$dir" 2>/dev/null || true
  done
  return 0
}

_custos_pg_bindir_ok() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

# Prints the directory with initdb/pg_ctl/postgres: $CUSTOS_PG_BINDIR, else the one initdb on
# PATH resolves to, else the highest Debian /usr/lib/postgresql/N/bin (or RHEL /usr/pgsql-N/bin).
_custos_pg_find_bindir() {
  local p d
  if [ -n "${CUSTOS_PG_BINDIR:-}" ]; then
    _custos_pg_bindir_ok "$CUSTOS_PG_BINDIR" && { echo "$CUSTOS_PG_BINDIR"; return 0; }
    _custos_pg_err "CUSTOS_PG_BINDIR=$CUSTOS_PG_BINDIR lacks initdb/pg_ctl/postgres"
    return 1
  fi
  if p="$(command -v initdb 2>/dev/null)"; then
    d="$(dirname "$(readlink -f "$p")")"
    _custos_pg_bindir_ok "$d" && { echo "$d"; return 0; }
  fi
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r) \
           $(printf '%s\n' /usr/pgsql-*/bin | sort -V -r); do
    _custos_pg_bindir_ok "$d" && { echo "$d"; return 0; }
  done
  return 1
}

_custos_pg_install() {
  local -a sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { _custos_pg_err "PostgreSQL is missing and neither root nor sudo is available to install it"; return 1; }
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 || { _custos_pg_err "PostgreSQL is missing and apt-get is not available; install PostgreSQL >= 12 or set CUSTOS_PG_BINDIR"; return 1; }
  echo "== installing PostgreSQL (apt-get install postgresql)" >&2
  local -a install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql)
  if ! "${install[@]}" >&2; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
    "${install[@]}" >&2 || return 1
  fi
}

# Prints two distinct currently-free TCP ports on 127.0.0.1.
_custos_pg_free_ports() {
  local py
  for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" - 2>/dev/null <<'EOF'; then return 0; fi
import socket
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
  done
  # Fallback: random high ports that nothing answers on (bash /dev/tcp).
  local -a ports=() p
  while [ "${#ports[@]}" -lt 2 ]; do
    p=$((20000 + RANDOM % 30000))
    [ "${#ports[@]}" = 1 ] && [ "${ports[0]}" = "$p" ] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    ports+=("$p")
  done
  echo "${ports[*]}"
}

_custos_pg_log_tails() {
  local f
  local d="${CUSTOS_PG_DIR:-/nonexistent}"
  for f in "$d/openssl.log" "$d/pg/tls.log" "$d/pg/plain.log"; do
    [ -f "$f" ] || continue
    [ "$f" = "$d/openssl.log" ] && [ -f "$d/pg/tls.log" ] && continue
    echo "----- last lines of $f" >&2
    tail -n 40 "$f" >&2 || true
  done
}

# ---------------------------------------------------------------- the work (runs under set -e)

_custos_pg_make_tls() {
  local t="$1" user="$2"
  cat >"$t/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
  local cnf="$t/openssl.cnf" name
  # EC P-256 keys in PKCS#8 PEM ("BEGIN PRIVATE KEY"): fast to make, read by libpq, rustls, openssl.
  for name in ca other-ca server client; do
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/$name.key")
    chmod 0600 "$t/$name.key"
  done
  openssl req -new -x509 -config "$cnf" -extensions ca -key "$t/ca.key" -sha256 -days 7 \
    -subj "/CN=custos test CA" -out "$t/ca.crt"
  openssl req -new -x509 -config "$cnf" -extensions ca -key "$t/other-ca.key" -sha256 -days 7 \
    -subj "/CN=custos untrusted test CA" -out "$t/other-ca.crt"
  local kind cn
  for kind in server client; do
    if [ "$kind" = server ]; then cn="localhost"; else cn="$user"; fi
    openssl req -new -config "$cnf" -key "$t/$kind.key" -subj "/CN=$cn" -out "$t/$kind.csr"
    openssl x509 -req -in "$t/$kind.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" \
      -set_serial "0x$(openssl rand -hex 8)" -sha256 -days 7 \
      -extfile "$cnf" -extensions "$kind" -out "$t/$kind.crt"
    rm -f "$t/$kind.csr"
  done
  chmod 0644 "$t"/*.crt
}

# Appends settings to a cluster's postgresql.conf (the last occurrence of a setting wins).
_custos_pg_conf() {
  local data="$1"
  shift
  printf '%s\n' "$@" | _custos_pg_as tee -a "$data/postgresql.conf" >/dev/null
}

# Starts a cluster on a port, retrying on a port race. Echoes the port it ended up on.
_custos_pg_start_one() {
  local data="$1" log="$2" port="$3" attempt
  for attempt in 1 2 3 4 5; do
    _custos_pg_conf "$data" "port = $port"
    if _custos_pg_as "$_CUSTOS_PG_BINDIR/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null; then
      echo "$port"
      return 0
    fi
    grep -q -e 'could not bind' -e 'Address already in use' "$log" 2>/dev/null || return 1
    port="$(_custos_pg_free_ports | cut -d' ' -f1)"
  done
  return 1
}

_custos_pg_psql() {
  # $1 = conninfo, rest = psql args. libpq env defaults (PGSSLMODE, PGSERVICE...) can't interfere
  # with what the conninfo sets explicitly.
  local conn="$1"
  shift
  PGPASSWORD="$_CUSTOS_PG_PASSWORD" PGCONNECT_TIMEOUT=10 "$_CUSTOS_PG_PSQL" "$conn" \
    -X -q -v ON_ERROR_STOP=1 "$@"
}

_custos_pg_start_impl() {
  local d="$CUSTOS_PG_DIR" t="$CUSTOS_PG_DIR/tls" pgd="$CUSTOS_PG_DIR/pg"
  local cert_user="custos_cert"
  local password
  password="$(openssl rand -hex 24)"
  _CUSTOS_PG_PASSWORD="$password"

  # Client-side material, owned by the caller.
  mkdir -m 0700 "$t"
  _custos_pg_make_tls "$t" "$cert_user" 2>"$d/openssl.log" # (no `||`: it would disable errexit inside)

  # Server-side directory, owned by the server's OS user.
  local owner="${_CUSTOS_PG_OS_USER:-$(id -un)}"
  install -d -m 0700 -o "$owner" "$pgd"
  install -m 0644 -o "$owner" "$t/server.crt" "$pgd/server.crt"
  install -m 0600 -o "$owner" "$t/server.key" "$pgd/server.key"
  install -m 0644 -o "$owner" "$t/ca.crt" "$pgd/ca.crt"
  (umask 077 && printf '%s\n' "$password" >"$pgd/pwfile")
  chown "$owner" "$pgd/pwfile"

  _custos_pg_as "$_CUSTOS_PG_BINDIR/initdb" -D "$pgd/tls-data" -U custos --pwfile="$pgd/pwfile" \
    --auth=scram-sha-256 -E UTF8 --locale=C -N >"$pgd/initdb.log" 2>&1 ||
    { cat "$pgd/initdb.log" >&2; return 1; }
  rm -f "$pgd/pwfile"
  _custos_pg_as cp -a "$pgd/tls-data" "$pgd/plain-data"
  _custos_pg_as mkdir -m 0700 "$pgd/sock-tls" "$pgd/sock-plain"

  local common=(
    "# --- custos test server (scripts/pg.sh)"
    "listen_addresses = '127.0.0.1'"
    "password_encryption = 'scram-sha-256'"
    "fsync = off"
    "synchronous_commit = off"
    "full_page_writes = off"
    "log_connections = on"
    "log_line_prefix = '%m [%p] %q%u@%d '"
  )
  _custos_pg_conf "$pgd/tls-data" "${common[@]}" \
    "unix_socket_directories = '$pgd/sock-tls'" \
    "max_connections = 100" \
    "shared_buffers = 64MB" \
    "ssl = on" \
    "ssl_cert_file = '$pgd/server.crt'" \
    "ssl_key_file = '$pgd/server.key'" \
    "ssl_ca_file = '$pgd/ca.crt'" \
    "ssl_min_protocol_version = 'TLSv1.2'"
  _custos_pg_conf "$pgd/plain-data" "${common[@]}" \
    "unix_socket_directories = '$pgd/sock-plain'" \
    "max_connections = 20" \
    "shared_buffers = 16MB" \
    "ssl = off"
  printf '%s\n' \
    "# custos test server: TLS only. No host/hostnossl/local lines." \
    "hostssl all $cert_user 127.0.0.1/32 cert" \
    "hostssl all all 127.0.0.1/32 scram-sha-256" |
    _custos_pg_as tee "$pgd/tls-data/pg_hba.conf" >/dev/null
  printf '%s\n' \
    "# custos test server: plaintext only (ssl=off)." \
    "host all all 127.0.0.1/32 scram-sha-256" |
    _custos_pg_as tee "$pgd/plain-data/pg_hba.conf" >/dev/null

  local ports port plain_port
  ports="$(_custos_pg_free_ports)"
  port="$(_custos_pg_start_one "$pgd/tls-data" "$pgd/tls.log" "${ports%% *}")"
  plain_port="$(_custos_pg_start_one "$pgd/plain-data" "$pgd/plain.log" "${ports##* }")"

  # Each -c runs in its own transaction (CREATE DATABASE can't run inside one).
  local tls_conn="host=localhost port=$port user=custos sslmode=verify-full sslrootcert=$t/ca.crt"
  local plain_conn="host=127.0.0.1 port=$plain_port user=custos sslmode=disable"
  local conn
  for conn in "$tls_conn" "$plain_conn"; do
    _custos_pg_psql "$conn dbname=postgres" \
      -c "CREATE DATABASE custos_test OWNER custos" -c "CREATE ROLE $cert_user LOGIN"
    _custos_pg_psql "$conn dbname=custos_test" -c "GRANT USAGE, CREATE ON SCHEMA public TO $cert_user"
  done

  (umask 077 && cat >"$t/env" <<EOF
export CUSTOS_PG_HOST=localhost
export CUSTOS_PG_PORT=$port
export CUSTOS_PG_DB=custos_test
export CUSTOS_PG_USER=custos
export CUSTOS_PG_PASSWORD=$password
export CUSTOS_PG_CA=$t/ca.crt
export CUSTOS_PG_OTHER_CA=$t/other-ca.crt
export CUSTOS_PG_CLIENT_CERT=$t/client.crt
export CUSTOS_PG_CLIENT_KEY=$t/client.key
export CUSTOS_PG_CERT_USER=$cert_user
export CUSTOS_PG_WRONG_HOST=127.0.0.1
export CUSTOS_PG_PLAIN_PORT=$plain_port
_CUSTOS_PG_VERSION=${_CUSTOS_PG_VERSION:-}
_CUSTOS_PG_OS_USER=${_CUSTOS_PG_OS_USER:-}
EOF
  )
}

# Resolves binaries and the server OS user, creates the temp dir. Runs in the caller's shell.
_custos_pg_prepare() {
  local bindir
  if ! bindir="$(_custos_pg_find_bindir)"; then
    [ -z "${CUSTOS_PG_BINDIR:-}" ] || return 1
    _custos_pg_install || { _custos_pg_err "installing PostgreSQL failed"; return 1; }
    bindir="$(_custos_pg_find_bindir)" || { _custos_pg_err "PostgreSQL installed but initdb/pg_ctl/postgres not found"; return 1; }
  fi
  local version major
  version="$("$bindir/postgres" --version 2>/dev/null | awk '{print $3}')"
  major="${version%%.*}"
  case "$major" in '' | *[!0-9]*) _custos_pg_err "cannot tell the version of $bindir/postgres"; return 1 ;; esac
  if [ "$major" -lt 12 ]; then
    _custos_pg_err "PostgreSQL $version in $bindir is too old (need >= 12 for ssl_min_protocol_version)"
    return 1
  fi
  _CUSTOS_PG_BINDIR="$bindir"
  _CUSTOS_PG_VERSION="$version"
  if [ -x "$bindir/psql" ]; then
    _CUSTOS_PG_PSQL="$bindir/psql"
  elif _CUSTOS_PG_PSQL="$(command -v psql 2>/dev/null)"; then
    :
  else
    _custos_pg_err "psql not found (install postgresql-client)"
    return 1
  fi
  command -v openssl >/dev/null 2>&1 || { _custos_pg_err "openssl not found"; return 1; }

  _CUSTOS_PG_OS_USER=""
  if [ "$(id -u)" = 0 ]; then
    local u="${CUSTOS_PG_OS_USER:-}"
    if [ -z "$u" ]; then
      if id postgres >/dev/null 2>&1; then
        u=postgres
      else
        u=custos-pg
        if ! id "$u" >/dev/null 2>&1; then
          useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$u" ||
            { _custos_pg_err "running as root and could not create the OS user $u for the server"; return 1; }
        fi
      fi
    fi
    id "$u" >/dev/null 2>&1 || { _custos_pg_err "OS user $u does not exist"; return 1; }
    [ "$(id -u "$u")" != 0 ] || { _custos_pg_err "the server cannot run as root (CUSTOS_PG_OS_USER=$u)"; return 1; }
    _CUSTOS_PG_OS_USER="$u"
  fi

  # Temp dir: $TMPDIR unless its path is too long for a Unix socket name (107 bytes) or, as root,
  # the server user can't reach it (e.g. TMPDIR under /root); then /tmp.
  local tmproot="${TMPDIR:-/tmp}"
  tmproot="${tmproot%/}"
  if [ "${#tmproot}" -gt 60 ] || [ ! -d "$tmproot" ] ||
     { [ -n "$_CUSTOS_PG_OS_USER" ] && ! _custos_pg_as test -x "$tmproot"; }; then
    tmproot=/tmp
  fi
  _custos_pg_reap_stale "$tmproot"
  CUSTOS_PG_DIR="$(mktemp -d "$tmproot/custos-pg.XXXXXX")" || { _custos_pg_err "mktemp failed"; return 1; }
  export CUSTOS_PG_DIR
  chmod 0711 "$CUSTOS_PG_DIR"
  echo "$$" >"$CUSTOS_PG_DIR/.custos-pg-owner"
}

# True when $CUSTOS_PG_DIR (set by an earlier sourcing in this shell or inherited from a parent
# shell) holds two live servers.
_custos_pg_running() {
  local dir="${CUSTOS_PG_DIR:-}" data pid
  [ -n "$dir" ] && [ -f "$dir/tls/env" ] || return 1
  for data in "$dir/pg/tls-data" "$dir/pg/plain-data"; do
    pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null)" || return 1
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
  done
}

_custos_pg_summary() {
  echo "== PostgreSQL ${_CUSTOS_PG_VERSION:-?} test servers: TLS $CUSTOS_PG_HOST:$CUSTOS_PG_PORT (db $CUSTOS_PG_DB, user $CUSTOS_PG_USER, mTLS user $CUSTOS_PG_CERT_USER), plaintext 127.0.0.1:$CUSTOS_PG_PLAIN_PORT${_CUSTOS_PG_OS_USER:+, running as OS user $_CUSTOS_PG_OS_USER}; dir $CUSTOS_PG_DIR"
}

# Chains custos_pg_stop in front of the EXIT trap that is in place (once per shell).
_custos_pg_install_trap() {
  [ "${_CUSTOS_PG_TRAP_SET:-}" = "$$" ] && return 0
  local prev
  prev="$(trap -p EXIT)"
  if [ -n "$prev" ]; then
    eval "set -- $prev" # -> trap -- 'command' EXIT
    prev="$3"
  fi
  # shellcheck disable=SC2064
  trap "custos_pg_stop${prev:+
$prev}" EXIT
  _CUSTOS_PG_TRAP_SET="$$"
}

# ---------------------------------------------------------------- main

_custos_pg_main() {
  if _custos_pg_running; then
    # shellcheck disable=SC1091
    . "$CUSTOS_PG_DIR/tls/env"
    _custos_pg_summary
    return 0
  fi
  custos_pg_stop # a half-dead earlier start by this shell
  unset CUSTOS_PG_DIR
  _custos_pg_prepare || return 1
  _custos_pg_install_trap

  # The work runs in a fresh bash with errexit on. (Not a subshell: if the caller wrote
  # `. pg.sh || ...`, errexit would be silently ignored in every function and subshell below.)
  local funcs
  funcs="$(declare -F | awk '$3 ~ /^_custos_pg_/ {print $3}')"
  # shellcheck disable=SC2086
  if ! _CUSTOS_PG_BINDIR="$_CUSTOS_PG_BINDIR" _CUSTOS_PG_OS_USER="$_CUSTOS_PG_OS_USER" \
       _CUSTOS_PG_PSQL="$_CUSTOS_PG_PSQL" _CUSTOS_PG_VERSION="$_CUSTOS_PG_VERSION" \
       bash -c "set -eEuo pipefail; shopt -s inherit_errexit
         trap 'echo \"pg.sh: failed: \$BASH_COMMAND\" >&2' ERR
         $(declare -f $funcs)
         _custos_pg_start_impl"; then
    _custos_pg_err "starting the PostgreSQL test servers failed"
    _custos_pg_log_tails
    custos_pg_stop
    unset CUSTOS_PG_DIR
    return 1
  fi
  # shellcheck disable=SC1091
  . "$CUSTOS_PG_DIR/tls/env"
  _custos_pg_summary
}

# Last command: its status is the status of `. pg.sh`.
_custos_pg_main
