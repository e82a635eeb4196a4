#!/bin/sh
# agentq's stand-in for the build tools QA runs (composer, npm, cargo, pytest),
# installed under those names in the test agent image only: its output proves
# that QA ran the right command line inside the container, not on the host.
# It fails when the repository's `.qa-fail` names this command ("npm test").
set -f
tool=$(basename "$0")
cmd="$tool${1:+ $1}"
echo "fake $cmd ran in the agentq test image"
if [ -f .qa-fail ] && [ "$(cat .qa-fail)" = "$cmd" ]; then
  echo "fake $cmd failed as .qa-fail asked"
  exit 3
fi
exit 0
