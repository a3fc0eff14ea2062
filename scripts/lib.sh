# Shell helpers the scripts share (sourced, not run): messages, timed steps, ports and
# Debian packages. Messages go to stderr so a script's stdout stays its output.

log() { printf '==> %s\n' "$*" >&2; }

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Runs "$@" as a named step and prints how long it took.
step() {
  local name="$1" started=$SECONDS
  shift
  log "$name"
  "$@"
  log "$name: done in $((SECONDS - started))s"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Waits up to 10 s for the redis-server on 127.0.0.1:PORT to answer PING; dies with its
# LOG if it does not, or at once if PID (the server's, when given) has exited.
await_redis() {
  local port="$1" logfile="$2" pid="${3:-}"
  for _ in $(seq 1 100); do
    [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ] && return
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      die "redis-server exited; its log:
$(cat "$logfile" 2>/dev/null)"
    fi
    sleep 0.1
  done
  die "redis-server on port $port did not answer PING within 10s; its log:
$(cat "$logfile" 2>/dev/null)"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_UPDATED=""

# Installs Debian packages, refreshing the package lists once per script run first (a
# new machine has none).
apt_install() {
  command -v apt-get >/dev/null 2>&1 ||
    die "$* is missing and there is no apt-get here: install $* (or your system's equivalents)"
  if [ -z "$APT_UPDATED" ]; then
    log "apt-get update"
    $SUDO apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "installing $* (Debian packages)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null ||
    die "apt-get install $* failed"
}
