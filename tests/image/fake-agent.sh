#!/bin/sh
# agentq's test agent. Installed as codex, claude, gemini and coderabbit in the
# test image. It does what `@agentq-test ...` lines in its arguments say, and
# never evaluates any of its arguments: they are data, as a real agent's prompt is.
#
#   @agentq-test commit            change agentq-change.txt and commit it
#   @agentq-test block "question"  write the question to BLOCKED.md
#   @agentq-test block-unless FILE "question"   the same, unless FILE exists
#   @agentq-test sleep N           sleep N seconds
#   @agentq-test hold              say so (/agentq-test/{job}.holding), then wait
#                                  until the test creates /agentq-test/release
#   @agentq-test exit N            exit with code N (at once)
#   @agentq-test require FILE      exit 9 unless FILE exists in the repo
#   @agentq-test print TEXT        print TEXT
#   @agentq-test env-check NAME... say whether each variable is set (never its value)
#   @agentq-test ignore-term       ignore SIGTERM from here on (only SIGKILL stops it)
#   @agentq-test write-home        write a file in $HOME (exit 71 if it cannot)
#   @agentq-test leave-uncommitted write agentq-uncommitted.txt and append to README.md
#                                  (if there is one), and commit neither
#   @agentq-test summary TEXT      as codex, write TEXT as its last message to
#                                  the file its `-o FILE` names (as codex does)
#   @agentq-test make-mess         as a real agent leaves a tree, committing nothing:
#                                  a new binary file (agentq-binary.bin), a file in a
#                                  new directory (agentq-new/notes.txt), README.md
#                                  edited (if any), agentq-delete-me.txt deleted (if any)
#   @agentq-test add-all           `git add -A` of everything, then commit it
#   @agentq-test background N      start a child that keeps stdout and stderr open and
#                                  sleeps N seconds, and go on without waiting for it;
#                                  /agentq-test/{job}.child gets `start=UPTIME sleep=N`
#   @agentq-test daemon N          the same as a daemon: double fork and setsid (a new
#                                  session, not the agent's process group), stdout and
#                                  stderr still open; /agentq-test/{job}.daemon
#   @agentq-test progress          a progress bar redrawn with carriage returns
#   @agentq-test colours           SGR colours, cursor moves, an OSC window title
#   @agentq-test bad-utf8          bytes that are not UTF-8 between words
#   @agentq-test reset-unrelated   reset the branch to a new root commit that shares
#                                  no history with the start (a history rewrite)
#   @agentq-test amend-base        `git commit --amend` of the commit the run started
#                                  from (a history rewrite)
#   @agentq-test limit-once TEXT   on this job's first run (one line in
#                                  /agentq-test/{job}.starts.log): print TEXT (a
#                                  provider's usage-limit message) and exit 1;
#                                  on later runs, nothing (the next directives run)
#
# Directives are read from the arguments and, when standard input is not a
# terminal, from standard input too (codex `exec -` and claude `-p` read their
# prompt there); when it is not empty its size is printed as `stdin-bytes=N`
# and its first 64 KiB as `stdin=...`.
#
# Several directives on one line run in order: `@agentq-test commit @agentq-test exit 3`.
set -f
name=$(basename "$0")
# The kernel's uptime, read by the shell itself (no process to be killed).
up() { read -r u _ < /proc/uptime; printf '%s' "$u"; }
started=$(up)
# The prompt on stdin, if any (kept in /tmp: it may be megabytes).
stdin_copy=/tmp/agentq-test-stdin.$$
: > "$stdin_copy" 2>/dev/null || stdin_copy=/dev/null
if [ ! -t 0 ] && [ "$stdin_copy" != /dev/null ]; then
  cat > "$stdin_copy"
  n=$(wc -c < "$stdin_copy" | tr -d ' ')
  if [ "$n" != 0 ]; then
    echo "stdin-bytes=$n"
    # Its first 64 KiB, as argv is printed below.
    printf 'stdin='; head -c 65536 "$stdin_copy"; echo
  fi
fi
echo "agentq-test-agent: $name"
i=0
for a in "$@"; do
  i=$((i + 1))
  printf 'argv[%d]=%s\n' "$i" "$a"
done
# codex's `-o FILE`: where it writes its last message (`@agentq-test summary`).
last_message=
prev=
for a in "$@"; do
  [ "$prev" = -o ] && last_message=$a
  prev=$a
done
# The run log (one line per run) goes where the tests mount /agentq-test.
log=/tmp/agent-runs.log
[ -d /agentq-test ] && log="/agentq-test/${AGENTQ_JOB_ID:-unknown}.runs.log"
finish() {
  # A second SIGTERM while the end is logged must not cut the line short.
  trap '' TERM
  read -r now _ < /proc/uptime
  printf '%s start=%s end=%s exit=%s\n' "$name" "$started" "$now" "$1" >> "$log" 2>/dev/null
  exit "$1"
}
# What a real agent leaves in a tree (see make-mess above).
make_mess() {
  printf '\000\001\002binary\377\376\375\n\000' > agentq-binary.bin
  mkdir -p agentq-new && echo "new by $name" > agentq-new/notes.txt
  [ -f README.md ] && echo "edited by $name" >> README.md
  rm -f agentq-delete-me.txt
  echo "made a mess"
}
# Waits (up to 10 s) until a child made file $1: it has said it started.
child_ready() {
  n=0
  while [ ! -e "$1" ] && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
}
# Every start is logged at once too (a run that is killed never reaches finish),
# and a stopped run records its end, so tests can tell whether two runs overlapped.
printf '%s start=%s\n' "$name" "$started" >> "${log%.runs.log}.starts.log" 2>/dev/null
trap 'finish 143' TERM
# Several directives may share a line: each `@agentq-test` starts one.
directives=$({ for a in "$@"; do printf '%s\n' "$a"; done; cat "$stdin_copy"; } | grep -o '@agentq-test .*' | sed 's/ @agentq-test /\
@agentq-test /g' || true)
[ "$stdin_copy" = /dev/null ] || rm -f "$stdin_copy"
printf '%s\n' "$directives" | while IFS= read -r line; do
  [ -n "$line" ] || continue
  rest=${line#@agentq-test }
  verb=${rest%% *}
  arg=${rest#"$verb"}
  arg=${arg# }
  case "$verb" in
    commit)
      echo "change by $name at $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> agentq-change.txt
      git add agentq-change.txt && git commit -q -m "agentq test: change by $name" || exit 70
      echo "committed"
      ;;
    block)
      q=$(printf '%s' "$arg" | sed -e 's/^"//' -e 's/"[^"]*$//')
      printf '%s\n' "$q" > BLOCKED.md
      echo "blocked: $q"
      ;;
    block-unless)
      file=${arg%% *}
      if [ ! -e "$file" ]; then
        q=$(printf '%s' "${arg#"$file"}" | sed -e 's/^ *"//' -e 's/"[^"]*$//')
        printf '%s\n' "$q" > BLOCKED.md
        echo "blocked: $q"
      else
        echo "found $file: $(cat "$file")"
      fi
      ;;
    hold)
      [ -d /agentq-test ] && : > "/agentq-test/${AGENTQ_JOB_ID:-unknown}.holding"
      while [ ! -e /agentq-test/release ]; do sleep 1 & wait $!; done
      ;;
    sleep)
      case "$arg" in *[!0-9]*|'') ;; *) sleep "$arg" & wait $! ;; esac
      ;;
    exit)
      case "$arg" in *[!0-9]*|'') ;; *) exit "$arg" ;; esac
      ;;
    require)
      [ -e "$arg" ] || { echo "missing $arg"; exit 9; }
      ;;
    print)
      printf '%s\n' "$arg"
      ;;
    ignore-term)
      trap '' TERM
      ;;
    write-home)
      { printf 'written by %s\n' "$name" > "$HOME/.agentq-home-check"; } 2>/dev/null || { echo "cannot write to HOME=$HOME"; exit 71; }
      echo "home writable: $HOME"
      ;;
    leave-uncommitted)
      echo "left by $name" >> agentq-uncommitted.txt
      [ -f README.md ] && echo "edited by $name, not committed" >> README.md
      echo "left uncommitted work"
      ;;
    summary)
      if [ "$name" = codex ] && [ -n "$last_message" ]; then
        printf '%s\n' "$arg" > "$last_message" && echo "summary written to $last_message"
      else
        echo "no -o file: summary not written"
      fi
      ;;
    make-mess)
      make_mess
      ;;
    add-all)
      git add -A || exit 70
      git status --porcelain | sed 's/^/staged: /'
      git commit -q -m "agentq test: everything by $name" || exit 70
      echo "committed everything"
      ;;
    background)
      case "$arg" in *[!0-9]*|'') ;; *)
        [ -d /agentq-test ] && printf 'start=%s sleep=%s\n' "$(up)" "$arg" > "/agentq-test/${AGENTQ_JOB_ID:-unknown}.child"
        sh -c 'echo "child: started"; echo "child: stderr open" >&2; : > "$2"; sleep "$1"; echo "child: woke up after $1 s"' child "$arg" /tmp/agentq-test-child.$$ &
        child_ready /tmp/agentq-test-child.$$
        echo "left a child sleeping $arg s with stdout open"
        ;;
      esac
      ;;
    daemon)
      case "$arg" in *[!0-9]*|'') ;; *)
        [ -d /agentq-test ] && printf 'start=%s sleep=%s\n' "$(up)" "$arg" > "/agentq-test/${AGENTQ_JOB_ID:-unknown}.daemon"
        # Double fork: the subshell exits at once, its child (in a session of
        # its own) is nobody's but init's.
        ( setsid sh -c 'echo "daemon: started in session $(cut -d" " -f6 /proc/$$/stat)"; : > "$2"; sleep "$1"; echo "daemon: woke up after $1 s"' daemon "$arg" /tmp/agentq-test-daemon.$$ & )
        child_ready /tmp/agentq-test-daemon.$$
        echo "left a daemon sleeping $arg s"
        ;;
      esac
      ;;
    progress)
      printf 'downloading   0%%\rdownloading  50%%\rdownloading 100%%\n'
      printf 'step 1/2\r\nstep 2/2\r\n'
      ;;
    colours)
      printf '\033]0;agent-window-title\007\033[1;32mgreen bold\033[0m then \033[38;5;196mred\033[m plain\n'
      printf 'spinner |\033[1D/\033[1D-\033[2K\033[1Gdone\033[3A\033[?25l\033[?25h\n'
      ;;
    bad-utf8)
      printf 'bytes \377\376 here, a cut \342\202 char, caf\303\251 ok\n'
      ;;
    reset-unrelated)
      blob=$(echo "unrelated history" | git hash-object -w --stdin) || exit 70
      tree=$(printf '100644 blob %s\tagentq-unrelated.txt\n' "$blob" | git mktree) || exit 70
      root=$(git commit-tree -m "agentq test: an unrelated root" "$tree") || exit 70
      git reset -q --hard "$root" || exit 70
      echo "reset to an unrelated root $root"
      ;;
    amend-base)
      echo "amended by $name" >> agentq-change.txt
      git add agentq-change.txt && git commit -q --amend -m "agentq test: the start commit amended" || exit 70
      echo "amended the start commit"
      ;;
    limit-once)
      starts=$(grep -c . "${log%.runs.log}.starts.log" 2>/dev/null || echo 0)
      if [ "$starts" -le 1 ]; then
        printf '%s\n' "$arg"
        exit 1
      fi
      echo "run $starts: no limit this time"
      ;;
    env-check)
      for var in $arg; do
        case "$var" in *[!A-Za-z0-9_]*) continue ;; esac
        if env | grep -q "^$var="; then echo "env $var is set"; else echo "env $var is unset"; fi
      done
      ;;
  esac
done
finish $?
