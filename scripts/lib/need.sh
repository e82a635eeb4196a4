# Sourced by scripts/demo, scripts/test and .ci/run: installs what a fresh Debian
# machine lacks, idempotently.
#   need_packages [--go] [--netns] [--compose] [--browser] [--pypi] [--venv]
# Missing: redis-server, git, openssl (the TLS test's certificates), a static busybox (the test agent image), and with
# --go Debian's golang-go (the Go QA image), with --netns iproute2 (the partition
# test), with --compose docker-compose (the compose pool test), with --browser
# chromium and chromium-driver (the web console's browser test), with --pypi
# debootstrap and pip (the image with a real agent from PyPI,
# scripts/build-test-image-mini), with --venv python3-venv (schemathesis' venv,
# scripts/lib/schemathesis.sh). As root it
# installs them with apt (one `apt-get update`); otherwise it
# prints the one command to run and returns 1.
is_static_busybox() {
  local b
  for b in "$(command -v busybox || true)" /bin/busybox /usr/bin/busybox; do
    [ -n "$b" ] && [ -x "$b" ] && { ldd "$b" 2>&1 || true; } | grep -q 'not a dynamic' && return 0
  done
  return 1
}

need_packages() {
  local want=() arg
  command -v redis-server >/dev/null || want+=(redis-server)
  command -v git >/dev/null || want+=(git)
  command -v openssl >/dev/null || want+=(openssl)
  is_static_busybox || want+=(busybox-static)
  for arg in "$@"; do
    case "$arg" in
      --go) command -v go >/dev/null || want+=(golang-go) ;;
      --netns) command -v ip >/dev/null || want+=(iproute2) ;;
      --compose) command -v docker-compose >/dev/null || want+=(docker-compose) ;;
      --browser)
        command -v chromium >/dev/null || want+=(chromium)
        command -v chromedriver >/dev/null || want+=(chromium-driver) ;;
      --pypi)
        { command -v debootstrap || [ -x /usr/sbin/debootstrap ]; } >/dev/null || want+=(debootstrap)
        python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip) ;;
      --venv) python3 -c 'import ensurepip, venv' 2>/dev/null || want+=(python3-venv) ;;
    esac
  done
  [ ${#want[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${want[*]}; install them with: sudo apt-get install -y ${want[*]}" >&2
    return 1
  fi
  echo "installing ${want[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
}
