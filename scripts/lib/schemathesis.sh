# Sourced by scripts/test and .ci/run (and usable alone:
# `bash scripts/lib/schemathesis.sh`): installs schemathesis, the OpenAPI
# fuzzer the suite runs against `agentq web` (tests/tests/web_schema.rs), from
# PyPI into a venv of its own, at the version and with the dependencies pinned
# in scripts/lib/schemathesis.txt. Once installed nothing is fetched again (a
# stamp file names the pinned set), so later runs work offline.
#   need_schemathesis   # prints the path of the schemathesis binary
# Where: $AGENTQ_SCHEMATHESIS_VENV, default ~/.cache/agentq/schemathesis (the
# test looks in the same place).
schemathesis_venv() {
  echo "${AGENTQ_SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/agentq/schemathesis}"
}

need_schemathesis() {
  local venv pins stamp want
  venv="$(schemathesis_venv)"
  pins="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/schemathesis.txt"
  stamp="$venv/.agentq-pins"
  want="$(sha256sum "$pins" | cut -d' ' -f1)"
  if [ -x "$venv/bin/schemathesis" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "$venv/bin/schemathesis"
    return 0
  fi
  python3 -c 'import ensurepip, venv' 2>/dev/null || {
    echo "need_schemathesis: python3 with venv is missing (apt-get install -y python3-venv)" >&2
    return 1
  }
  echo "installing schemathesis into $venv (pip, pinned in $pins)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || return 1
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -r "$pins" >&2 || return 1
  "$venv/bin/pip" check >&2 || return 1
  echo "$want" >"$stamp"
  echo "$venv/bin/schemathesis"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  need_schemathesis
fi
