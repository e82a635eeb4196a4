//! `agentq-watchdog`: the dead-man switch an agent container runs as its PID 1,
//! so the agent cannot outlive the worker that started it.
//!
//! Usage: `agentq-watchdog --beat FILE --stale-ms N [--argv-from FILE] [--stdin-from FILE] [--after FILE] -- [CMD [ARGS...]]`
//! or `agentq-watchdog --open-root GID` (see `open_root.rs`: run by the worker as root
//! in a held container on a `fuse-overlayfs` host, before anything else runs in it).
//!
//! With `--after`, once CMD has exited on its own the watchdog kills
//! everything else in the container and runs the worker's commands from that
//! file, their output framed on its stdout, a channel CMD never holds (see
//! `after.rs`: how commits leave the sandbox without a second container).
//!
//! With `--stdin-from`, CMD's standard input is that file, opened read-only
//! (the prompt file, for agents that read their prompt there: no size limit,
//! no shell).
//!
//! With `--after` and no command (QA's container), the container may start
//! before its plan is written: the watchdog waits, as for `--argv-from`,
//! until that file exists.
//!
//! With `--argv-from`, the container starts before its command is known: the
//! watchdog waits (checking the heartbeat, and ending on a signal) until that
//! file exists, then runs the command it holds, each argument written as its
//! length in bytes, `:` and the bytes.
//!
//! It runs CMD (same stdio, environment and working directory) in a process group
//! of its own, waits for it on the main thread (so its end is seen at once, not
//! at the next tick) and, on a second thread, every 250 ms, looks at FILE's
//! modification time: the worker
//! touches that file while it still owns the run. When the file is missing or older
//! than N ms, it says so on stderr (one line), sends SIGTERM to CMD's process
//! group, waits up to a second, sends SIGKILL to the group and exits 137. In a
//! container the watchdog is PID 1: its exit ends the container, and the kernel
//! kills whatever is left in the container's PID namespace, process group or not.
//!
//! As PID 1 it cannot be stopped by the agent: the kernel delivers no signal
//! from inside a PID namespace to its init unless the init has a handler for it,
//! so SIGSTOP and SIGKILL (`kill -STOP -1`, `kill -9 1`) never reach it, and
//! the signals it handles only make it stop the agent. It also makes itself
//! non-dumpable, so the agent (same uid, no capabilities) cannot ptrace it or
//! read its memory. Being init, it reaps every orphan the agent leaves, as
//! tini did.
//!
//! SIGTERM, SIGINT and SIGHUP sent to the watchdog are passed on to CMD's process
//! group (`docker stop` signals PID 1: us).
//! When CMD exits, the watchdog exits with CMD's code, or 128 + the signal that
//! killed it. Bad usage: exit 125; CMD not found: 127; CMD not runnable: 126.
//!
//! Built by `worker/build.rs` as a static executable with std only, so it runs in
//! any image (glibc, musl or none at all) and is never taken from the image.

mod after;
mod open_root;

use std::{
    ffi::OsString,
    io::ErrorKind,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::PathBuf,
    process::{Child, Command, ExitStatus},
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime},
};

type CInt = i32;

extern "C" {
    fn kill(pid: CInt, sig: CInt) -> CInt;
    fn signal(signum: CInt, handler: usize) -> usize;
    fn waitpid(pid: CInt, status: *mut CInt, options: CInt) -> CInt;
    fn prctl(option: CInt, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> CInt;
}

const PR_SET_DUMPABLE: CInt = 4;

const SIGHUP: CInt = 1;
const SIGINT: CInt = 2;
const SIGKILL: CInt = 9;
const SIGTERM: CInt = 15;
const FORWARDED: [CInt; 3] = [SIGTERM, SIGINT, SIGHUP];

const EXIT_USAGE: i32 = 125;
const EXIT_STALE: i32 = 137;
const TICK: Duration = Duration::from_millis(50);
const CHECK_EVERY: Duration = Duration::from_millis(250);
const TERM_GRACE: Duration = Duration::from_secs(1);

/// Signals received and not yet passed on, one bit per signal number.
static PENDING: AtomicU32 = AtomicU32::new(0);
/// Set by the watching thread once it stops a stale agent: its end is then
/// the watchdog's exit 137, not the agent's own code.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Set by the main thread once the agent has been reaped.
static EXITED: AtomicBool = AtomicBool::new(false);
/// Set once a signal was passed on to the agent: a stopped run exports
/// nothing (`--after`).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: CInt) {
    // Only an atomic store: async-signal-safe.
    PENDING.fetch_or(1 << sig, Ordering::SeqCst);
}

const USAGE: &str = "usage: agentq-watchdog --beat FILE --stale-ms N [--argv-from FILE] [--stdin-from FILE] [--after FILE] -- [CMD [ARGS...]]";

/// Linux's limit on one argument (`MAX_ARG_STRLEN`, 32 pages).
const MAX_ARG_BYTES: usize = 128 * 1024;
/// `E2BIG`: the arguments (or one of them) are too long for `execve`.
const E2BIG: i32 = 7;

struct Args {
    beat: PathBuf,
    stale: Duration,
    /// Held: the command comes from this file once it exists.
    argv_from: Option<PathBuf>,
    /// The command's standard input, opened read-only.
    stdin_from: Option<PathBuf>,
    /// What to run after the command (see `after.rs`).
    after: Option<PathBuf>,
    command: Vec<OsString>,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut beat = None;
    let mut stale_ms = None;
    let mut argv_from = None;
    let mut stdin_from = None;
    let mut after = None;
    loop {
        let Some(arg) = args.next() else {
            return Err("no command: `-- CMD [ARGS...]` is missing".into());
        };
        match arg.to_str() {
            Some("--") => break,
            Some("--beat") => {
                let v = args.next().ok_or("--beat needs a file")?;
                if v.is_empty() {
                    return Err("--beat needs a file".into());
                }
                beat = Some(PathBuf::from(v));
            }
            Some("--stale-ms") => {
                let v = args.next().ok_or("--stale-ms needs a number")?;
                let n = v
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("--stale-ms needs a positive number of milliseconds, not {v:?}")
                    })?;
                stale_ms = Some(n);
            }
            Some("--argv-from") => {
                let v = args.next().ok_or("--argv-from needs a file")?;
                if v.is_empty() {
                    return Err("--argv-from needs a file".into());
                }
                argv_from = Some(PathBuf::from(v));
            }
            Some("--stdin-from") => {
                let v = args.next().ok_or("--stdin-from needs a file")?;
                if v.is_empty() {
                    return Err("--stdin-from needs a file".into());
                }
                stdin_from = Some(PathBuf::from(v));
            }
            Some("--after") => {
                let v = args.next().ok_or("--after needs a file")?;
                if v.is_empty() {
                    return Err("--after needs a file".into());
                }
                after = Some(PathBuf::from(v));
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let command: Vec<OsString> = args.collect();
    match (&argv_from, command.is_empty()) {
        // `--after` alone: nothing to run first (QA's container).
        (None, true) if after.is_some() => {}
        (None, true) => return Err("no command after `--`".into()),
        (Some(_), false) => return Err("a command after `--` and --argv-from".into()),
        _ => {}
    }
    Ok(Args {
        argv_from,
        stdin_from,
        after,
        beat: beat.ok_or("--beat is required")?,
        stale: Duration::from_millis(stale_ms.ok_or("--stale-ms is required")?),
        command,
    })
}

/// Why the agent has to stop, or `None` while the heartbeat is fresh.
fn stale(beat: &std::path::Path, limit: Duration) -> Option<String> {
    let ms = limit.as_millis();
    match std::fs::metadata(beat).and_then(|m| m.modified()) {
        Ok(mtime) => {
            // A modification time in the future (clock adjustments) counts as fresh.
            let age = SystemTime::now().duration_since(mtime).unwrap_or_default();
            (age > limit).then(|| {
                format!(
                    "the worker's heartbeat is {} ms old (limit {ms} ms)",
                    age.as_millis()
                )
            })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Some(format!(
            "the worker's heartbeat file is missing (limit {ms} ms)"
        )),
        Err(e) => Some(format!(
            "the worker's heartbeat file cannot be read ({e}) (limit {ms} ms)"
        )),
    }
}

fn signal_group(pgid: u32, sig: CInt) {
    // A pid is at most 2^22; never 0 or negative, which would mean "everyone".
    let Ok(pgid) = CInt::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals that process group; no memory
    // is involved. ESRCH (the group is gone) is fine.
    unsafe {
        kill(-pgid, sig);
    }
}

fn forward_pending(pgid: u32) {
    let pending = PENDING.swap(0, Ordering::SeqCst);
    if FORWARDED.iter().any(|s| pending & (1 << s) != 0) {
        SIGNALLED.store(true, Ordering::SeqCst);
    }
    for sig in FORWARDED {
        if pending & (1 << sig) != 0 {
            signal_group(pgid, sig);
        }
    }
}

fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Waits for the agent, reaping every other child on the way: as a container's
/// PID 1 the watchdog inherits the agent's orphans (a `setsid` child, a
/// daemon), and unreaped they would fill the pids limit. Returns the agent's
/// exit code (128 + signal when killed).
fn wait_for(child: &Child) -> i32 {
    let agent = child.id() as CInt;
    loop {
        let mut status: CInt = 0;
        // SAFETY: waitpid(2) writes the status of a reaped child to `status`.
        let pid = unsafe { waitpid(-1, &mut status, 0) };
        if pid == agent {
            return code_of(ExitStatus::from_raw(status));
        }
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("agentq-watchdog: waiting for the agent failed: {e}");
            return 1;
        }
    }
}

/// SIGTERM to the group, up to [`TERM_GRACE`] for the agent to go, SIGKILL to the
/// group (whatever ignored SIGTERM), exit 137. Runs on the watching thread; the
/// main thread reaps the agent meanwhile.
fn stop(pgid: u32, why: &str) -> ! {
    STOPPING.store(true, Ordering::SeqCst);
    eprintln!("agentq-watchdog: {why}; stopping the agent");
    signal_group(pgid, SIGTERM);
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline && !EXITED.load(Ordering::SeqCst) {
        std::thread::sleep(TICK);
    }
    // If the agent was reaped already and its group is empty, the group id is
    // free again; a new process would need the same pid within microseconds
    // (a full wrap of pid_max) to be hit, which cannot happen in practice.
    signal_group(pgid, SIGKILL);
    std::process::exit(EXIT_STALE);
}

/// The watching thread: passes signals on and stops a stale agent.
fn watch(pgid: u32, beat: PathBuf, limit: Duration) {
    let mut next_check = Instant::now();
    loop {
        forward_pending(pgid);
        if Instant::now() >= next_check {
            if let Some(why) = stale(&beat, limit) {
                stop(pgid, &why);
            }
            next_check = Instant::now() + CHECK_EVERY;
        }
        std::thread::sleep(TICK);
    }
}

/// Decodes a held run's command: each argument as its length in bytes, in
/// decimal, a `:` and the bytes (any bytes, NUL included, so no argument can
/// split into two).
fn decode_argv(mut bytes: &[u8]) -> Result<Vec<OsString>, String> {
    use std::os::unix::ffi::OsStringExt;
    let mut argv = Vec::new();
    while !bytes.is_empty() {
        let colon = bytes
            .iter()
            .position(|b| *b == b':')
            .ok_or("no `:` after a length")?;
        let len: usize = std::str::from_utf8(&bytes[..colon])
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or("a length that is not a number")?;
        let rest = &bytes[colon + 1..];
        if rest.len() < len {
            return Err("an argument shorter than its length".into());
        }
        argv.push(OsString::from_vec(rest[..len].to_vec()));
        bytes = &rest[len..];
    }
    if argv.is_empty() {
        return Err("no command".into());
    }
    Ok(argv)
}

/// Held: waits for `file` (the worker writes it, whole, by a rename, once the
/// workspace is ready) and returns the command it holds. Meanwhile a signal
/// ends the watchdog (128 + the signal) and a stale heartbeat ends it (137),
/// as they would the agent.
fn wait_for_argv(file: &std::path::Path, beat: &std::path::Path, limit: Duration) -> Vec<OsString> {
    hold(beat, limit, "the agent never started", || match std::fs::read(file) {
        Ok(bytes) => match decode_argv(&bytes) {
            Ok(argv) => Some(argv),
            Err(e) => {
                eprintln!("agentq-watchdog: {}: {e}", file.display());
                std::process::exit(EXIT_USAGE);
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            eprintln!("agentq-watchdog: cannot read {}: {e}", file.display());
            std::process::exit(EXIT_USAGE);
        }
    })
}

/// Held with `--after` and no command (QA's container, started while the
/// agent runs): waits, as [`wait_for_argv`] does, until the plan `file`
/// exists (the worker writes it whole, by a rename, once the checkout is
/// made); an error reading it is said by `run_after`, which reads it.
fn wait_for_plan(file: &std::path::Path, beat: &std::path::Path, limit: Duration) {
    hold(beat, limit, "nothing ran", || match std::fs::symlink_metadata(file) {
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        _ => Some(()),
    })
}

/// The hold of [`wait_for_argv`] and [`wait_for_plan`]: polls `ready` until
/// it gives something; a signal ends the watchdog (128 + the signal), a stale
/// heartbeat ends it (137, saying `never_ran`). Polled every 2 ms in the
/// first 2 s, then every 10 ms (a QA hold lasts the agent's whole run).
fn hold<T>(
    beat: &std::path::Path,
    limit: Duration,
    never_ran: &str,
    mut ready: impl FnMut() -> Option<T>,
) -> T {
    let began = Instant::now();
    let mut next_check = Instant::now();
    loop {
        let pending = PENDING.load(Ordering::SeqCst);
        if let Some(sig) = FORWARDED.iter().find(|s| pending & (1 << **s) != 0) {
            std::process::exit(128 + sig);
        }
        if let Some(got) = ready() {
            return got;
        }
        if Instant::now() >= next_check {
            if let Some(why) = stale(beat, limit) {
                eprintln!("agentq-watchdog: {why}; {never_ran}");
                std::process::exit(EXIT_STALE);
            }
            next_check = Instant::now() + CHECK_EVERY;
        }
        let poll = if began.elapsed() < Duration::from_secs(2) { 2 } else { 10 };
        std::thread::sleep(Duration::from_millis(poll));
    }
}

/// Why an `execve` failed with `E2BIG`, in words: the longest argument and
/// the kernel's limit on one; empty for other errors.
fn too_long(command: &[OsString], e: &std::io::Error) -> String {
    if e.raw_os_error() != Some(E2BIG) {
        return String::new();
    }
    let (i, longest) = command
        .iter()
        .enumerate()
        .max_by_key(|(_, a)| a.len())
        .map_or((0, 0), |(i, a)| (i, a.len()));
    let total: usize = command.iter().map(|a| a.len() + 1).sum();
    if longest > MAX_ARG_BYTES {
        format!(
            " (argument {i}, the prompt most likely, is {} KB, over the {} KiB the kernel allows in one argument: \
             give the agent its prompt as a file or on stdin)",
            longest / 1000,
            MAX_ARG_BYTES / 1024
        )
    } else {
        format!(
            " (the arguments and environment are over the kernel's limit: the arguments alone are {} KB)",
            total / 1000
        )
    }
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    if argv.first().is_some_and(|a| a == "--open-root") {
        std::process::exit(open_root::run(&argv[1..]));
    }
    let args = match parse(argv.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("agentq-watchdog: {e}\n{USAGE}");
            std::process::exit(EXIT_USAGE);
        }
    };

    // Out of the agent's reach: no ptrace, no reading of our memory (reset
    // for the agent by its exec).
    // SAFETY: prctl(2) with PR_SET_DUMPABLE takes integer arguments only.
    unsafe {
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    }

    // Handlers first, so a signal that arrives while the agent starts is kept and
    // passed on. The child gets default dispositions back at exec.
    for sig in FORWARDED {
        // SAFETY: installs a handler that only touches an atomic.
        unsafe {
            signal(sig, on_signal as extern "C" fn(CInt) as usize);
        }
    }

    let command = match &args.argv_from {
        Some(file) => wait_for_argv(file, &args.beat, args.stale),
        None => args.command.clone(),
    };
    if command.is_empty() {
        // `--after` with no command: only the plan, watched the same way.
        if let Some(plan) = &args.after {
            // Held (QA's container, started while the agent runs): until the
            // worker writes the plan.
            wait_for_plan(plan, &args.beat, args.stale);
            let (beat, limit) = (args.beat.clone(), args.stale);
            std::thread::spawn(move || watch(0, beat, limit));
            after::run_after(plan, None);
        }
        std::process::exit(0);
    }
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).process_group(0);
    if let Some(file) = &args.stdin_from {
        match std::fs::File::open(file) {
            Ok(f) => {
                cmd.stdin(f);
            }
            Err(e) => {
                eprintln!(
                    "agentq-watchdog: cannot open {} for the agent's stdin: {e}",
                    file.display()
                );
                std::process::exit(126);
            }
        }
    }
    // `--after`: the agent's stdout and stderr are a pipe the watchdog
    // relays to its stderr; its own stdout stays its own (see `after.rs`).
    let relay = match &args.after {
        Some(_) if after::is_init() => match after::Relay::new() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("agentq-watchdog: cannot make the agent's output pipe: {e}");
                std::process::exit(126);
            }
        },
        _ => None,
    };
    let relay = relay.map(|mut r| {
        cmd.stdout(std::mem::replace(&mut r.out, std::process::Stdio::null()))
            .stderr(std::mem::replace(&mut r.err, std::process::Stdio::null()));
        r
    });
    let spawned = cmd.spawn();
    // The pipe's write ends are the agent's only from here.
    drop(cmd);
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "agentq-watchdog: cannot run {:?}: {e}{}",
                command[0].to_string_lossy(),
                too_long(&command, &e)
            );
            std::process::exit(if e.kind() == ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let pgid = child.id();
    let (beat, limit) = (args.beat.clone(), args.stale);
    std::thread::spawn(move || watch(pgid, beat, limit));
    let code = wait_for(&child);
    EXITED.store(true, Ordering::SeqCst);
    if STOPPING.load(Ordering::SeqCst) {
        // The watching thread is stopping a stale agent: its exit is 137.
        signal_group(pgid, SIGKILL);
        std::process::exit(EXIT_STALE);
    }
    if let Some(relay) = relay {
        // Everyone else goes (their end of the pipe with them), then the
        // agent's last output is copied, then the worker's commands run.
        after::kill_all();
        relay.drain();
        forward_pending(pgid);
        if !SIGNALLED.load(Ordering::SeqCst) && !STOPPING.load(Ordering::SeqCst) {
            if let Some(plan) = &args.after {
                after::run_after(plan, Some(code));
            }
        }
    } else if let Some(plan) = &args.after {
        // Not a container's PID 1: it says so and runs nothing.
        after::run_after(plan, None);
    }
    std::process::exit(code);
}
