#!/usr/bin/env bash
# Runs the documentation's walkthroughs as a reader would paste them, so the README stays
# the one copy of its commands and a command that no longer works fails CI:
#
#   scripts/check-walkthrough.sh [FILE...]     (default: README.md docs/data-jobs.md)
#
# A walkthrough is the ```sh block that follows a line starting with
# `<!-- walkthrough` in a Markdown file. Each runs in a fresh temporary directory whose
# path contains a space (the README's `$PWD` once broke on one), with the `jobfleet` of
# the debug build first on PATH (JOBFLEET_BIN names another binary) and no JOBFLEET_*
# variable from the caller's environment, as on a new user's machine. Its commands run
# one at a time in one shell of its own (a `cd` or an `export` carries on to the next);
# the first that fails stops its walkthrough, printed with its exit status and output,
# and so does WALKTHROUGH_TIMEOUT (600 s) passing, for a command that never ends. The last
# line counts the walkthroughs: `walkthroughs: N passed, N failed` (scripts/test.sh adds
# it to its total). The walkthroughs checked now need no service: `jobfleet run` runs
# on the embedded backend.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

MARKER='<!-- walkthrough'
TIMEOUT="${WALKTHROUGH_TIMEOUT:-600}"

# The binary the walkthroughs call as `jobfleet`: the one the test step just built.
binary() {
  local bin="${JOBFLEET_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/jobfleet}"
  [ -x "$bin" ] || die "$bin is not built: run 'cargo build --workspace' (or set JOBFLEET_BIN)"
  (cd "$(dirname "$bin")" && printf '%s/%s\n' "$PWD" "$(basename "$bin")")
}

# Prints the walkthroughs of file $1, one command per line (a line ending in a backslash
# joined with the next; blank lines and comments left out), each walkthrough ended by a
# line holding only an ASCII record separator and its first line `# FILE:LINE`.
walkthroughs() {
  awk -v marker="$MARKER" -v file="${1#"$ROOT"/}" '
    index($0, marker) == 1 { armed = NR; next }
    armed && !inside && /^```sh[[:space:]]*$/ { inside = 1; print "# " file ":" armed; next }
    inside && /^```[[:space:]]*$/ { inside = 0; armed = 0; print "\036"; next }
    inside {
      line = pending $0
      if (line ~ /\\$/) { pending = substr(line, 1, length(line) - 1); next }
      pending = ""
      if (line ~ /^[[:space:]]*(#|$)/) next
      print line
    }
    END { if (inside) { print "walkthrough at " file ":" armed " has no closing fence" > "/dev/stderr"; exit 1 } }
  ' "$1"
}

# Runs one walkthrough's commands ("$@") in a new directory with a space in its path, in
# a bash of their own (so a command cannot change this script's state) under a timeout.
# The directory is removed when every command passed and kept, for a look, when not.
run_walkthrough() {
  local dir output status=0
  [ "$#" -gt 0 ] || { printf 'FAILED: the walkthrough has no command\n' >&2; return 1; }
  dir="$(mktemp -d "${TMPDIR:-/tmp}/jobfleet walkthrough.XXXXXX")"
  output="$(mktemp)"
  timeout --kill-after=10 "$TIMEOUT" bash -c \
    "$(declare -f log run_commands)"'; cd "$1" && shift && run_commands "$@"' \
    walkthrough "$dir" "$output" "$@" || status=$?
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    printf 'TIMED OUT after %ss in %s, in the command after the last ok; its output:\n' \
      "$TIMEOUT" "$dir" >&2
    sed 's/^/  | /' "$output" >&2
  fi
  rm -f "$output"
  if [ "$status" -eq 0 ]; then
    rm -rf "$dir"
    return 0
  fi
  log "  left $dir as the walkthrough left it"
  return 1
}

# Runs the commands ("${@:2}") one by one in the calling shell, each one's output in file
# $1; the first that fails is printed with its exit status and output, and ends the run.
run_commands() {
  local output="$1" command started status
  shift
  for command in "$@"; do
    started=$SECONDS
    status=0
    eval "$command" >"$output" 2>&1 </dev/null || status=$?
    if [ "$status" -eq 0 ]; then
      log "  ok ($((SECONDS - started))s): $command"
      continue
    fi
    printf 'FAILED (exit %s) in %s:\n  $ %s\n' "$status" "$PWD" "$command" >&2
    sed 's/^/  | /' "$output" >&2
    return 1
  done
}

main() {
  local files=("$@") bin name passed=0 failed=0 file blocks where line
  local commands=()
  [ "${#files[@]}" -gt 0 ] || files=("$ROOT/README.md" "$ROOT/docs/data-jobs.md")
  bin="$(binary)"
  while read -r name; do unset "$name"; done < <(compgen -e | grep '^JOBFLEET_' || true)
  PATH="$(dirname "$bin"):$PATH"
  [ "$(command -v jobfleet)" = "$bin" ] || die "jobfleet resolves to $(command -v jobfleet), not $bin"
  log "walkthroughs, with $bin"
  for file in "${files[@]}"; do
    [ -f "$file" ] || die "$file: no such file"
    blocks="$(walkthroughs "$file")"
    while IFS= read -r line; do
      if [ -z "$line" ]; then
        continue
      elif [ "$line" = $'\036' ]; then
        log "$where"
        if run_walkthrough "${commands[@]}"; then
          passed=$((passed + 1))
        else
          failed=$((failed + 1))
        fi
        commands=()
      elif [[ "$line" == "# "* ]]; then
        where="${line#\# }"
      else
        commands+=("$line")
      fi
    done <<<"$blocks"
  done
  [ $((passed + failed)) -gt 0 ] ||
    die "no walkthrough (a line starting with '$MARKER' before a \`\`\`sh block) in ${files[*]}"
  printf 'walkthroughs: %s passed, %s failed\n' "$passed" "$failed"
  [ "$failed" -eq 0 ]
}

main "$@"
