//! `--after FILE`: the agent's work read out of the sandbox by the watchdog
//! itself, once the agent is gone, on a channel only the watchdog holds.
//!
//! This replaces the export (and leftovers) containers a committing job used
//! to start after the agent's: same image, same uid, same working tree, no
//! second `docker create/start`.
//!
//! # The channel
//!
//! With `--after`, the agent never gets the container's stdout. Its stdout
//! and stderr are one pipe, which a thread of the watchdog copies to the
//! container's stderr (the agent's log, as before). The container's stdout
//! (fd 1) is the watchdog's alone; after the agent, it carries frames:
//! `[kind u8][section u8][len u32 BE][payload]`, kind `D` (data of a
//! section) or `E` (its end: the exit code as i32 BE, then at most 4 KiB of
//! its stderr). The worker reads the attached stdout as frames and stderr as
//! the log (`worker/src/docker/after.rs`). After the agent's run, once every
//! command has run, one end frame more (the section after the commands')
//! carries the agent's exit code, the code the watchdog then exits with: the
//! worker has the run's whole result from the channel and need not wait for
//! Docker's report of the container's exit.
//!
//! # Why the agent cannot forge it
//!
//! - No agent process ever holds fd 1: the agent's fds 1 and 2 are the relay
//!   pipe (set before its `exec`), the watchdog's own fds are close-on-exec,
//!   and whatever the agent forks inherits only the pipe. Bytes an agent
//!   writes that look like frames go to the log.
//! - It cannot reach the watchdog's fd 1 another way: the watchdog is
//!   non-dumpable from its first instruction (`/proc/1/fd/1` needs ptrace
//!   access, which the same uid without `CAP_SYS_PTRACE` does not have on a
//!   non-dumpable process), and the container has no TTY and no capabilities.
//! - Nothing of the agent runs while the work is read: when the agent's
//!   process exits, the watchdog (PID 1 of the container's PID namespace)
//!   sends SIGKILL to every other process in the namespace (`kill(-1)` from
//!   a namespace's init spares only the init) and reaps them until none is
//!   left, daemons and `setsid` children included (a process killed by
//!   SIGKILL cannot fork on its way out). Only then does it run the
//!   commands. It does so again before each command, or, for a plan whose
//!   commands run at once (the agent's export and leftovers, flag `p`),
//!   before them all and after them all.
//! - Commands run at once are each other's neighbours: a process one of them
//!   starts (a filter of the agent's repository configuration, run by the
//!   leftovers' `git add`) could write, as the same uid, into the other's
//!   stdout pipe through `/proc`. That is no more than the agent could do
//!   to its own work: each section is untrusted data to the worker, checked
//!   as below, and neither reaches the channel or the exit code's frame,
//!   which only the watchdog writes. One that outlives its command's group
//!   goes at the plan's end, or at the time limit if it holds a pipe.
//! - The commands are the worker's, read from FILE in the run's heartbeat
//!   directory, which the container sees read-only (a file the agent
//!   pre-wrote elsewhere is never read; one it tried to write there could
//!   not be written). The commands' stdout is a pipe to the watchdog, which
//!   frames it; a command of the agent's repository configuration that git
//!   might run sees the same sandbox the export container gave it, and what
//!   comes out is untrusted data to the worker exactly as before: it fetches
//!   the bundle with object checking, checks that the head descends from the
//!   run's start commit, and caps what it reads.
//! - Only as PID 1: anywhere else `kill(-1)` would mean every process of the
//!   user, so `--after` does nothing (the worker then starts the export
//!   container as before). A run stopped by a signal or a stale heartbeat
//!   exports nothing either; the worker falls back the same way.
//!
//! # FILE
//!
//! Written by the worker, in the format of `--argv-from`: `1`, the
//! directory to run in, the time limit of each command in milliseconds, the
//! number of commands, then each command as its number of arguments and the
//! arguments. Version `2` has flags after the time limit: `m` each
//! command's stderr framed with its stdout, `s` no command after one that
//! fails, `p` the commands at once (not with `s`). A `.git/HEAD` in that
//! directory that is not a plain file (a FIFO git would wait on) makes the
//! watchdog export nothing.

use std::{
    ffi::OsString,
    fs::File,
    io::{ErrorKind, Read, Write},
    mem::ManuallyDrop,
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{code_of, decode_argv, kill, waitpid, CInt, SIGKILL, SIGNALLED};

extern "C" {
    fn getpid() -> CInt;
    fn pipe2(fds: *mut CInt, flags: CInt) -> CInt;
}

const O_CLOEXEC: CInt = 0o2_000_000;
const WNOHANG: CInt = 1;
/// Exit code of a command that ran past its time limit (no process's own).
const TIMED_OUT: i32 = -1;
/// Most of a command's stderr kept for its end frame.
const STDERR_KEPT: usize = 4096;
/// Largest data frame.
const CHUNK: usize = 64 * 1024;

/// The agent's stdout and stderr: a pipe whose write end the agent gets (as
/// both), and the thread that copies its read end to the container's stderr.
pub(crate) struct Relay {
    pub(crate) out: Stdio,
    pub(crate) err: Stdio,
    thread: JoinHandle<()>,
}

impl Relay {
    pub(crate) fn new() -> std::io::Result<Relay> {
        let mut fds: [CInt; 2] = [-1, -1];
        // SAFETY: pipe2(2) writes two new descriptors into `fds`.
        if unsafe { pipe2(fds.as_mut_ptr(), O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just made and are owned here only.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let err = write.try_clone()?;
        let thread = std::thread::spawn(move || {
            let mut read = File::from(read);
            let mut buf = vec![0u8; CHUNK];
            loop {
                match read.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let _ = std::io::stderr().write_all(&buf[..n]);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        Ok(Relay {
            out: Stdio::from(write),
            err: Stdio::from(err),
            thread,
        })
    }

    /// Waits until every writer is gone (after [`kill_all`]) and all the
    /// agent's output is copied.
    pub(crate) fn drain(self) {
        let _ = self.thread.join();
    }
}

/// Whether `--after` can keep its promise here: only a namespace's init.
pub(crate) fn is_init() -> bool {
    // SAFETY: getpid(2) has no arguments.
    unsafe { getpid() == 1 }
}

/// SIGKILL to every process but us, reaping until none is left. Only as
/// PID 1 (see the module docs).
pub(crate) fn kill_all() {
    if !is_init() {
        return;
    }
    loop {
        // SAFETY: kill(2) with -1 from a PID namespace's init signals every
        // other process of the namespace.
        let sent = unsafe { kill(-1, SIGKILL) };
        let mut reaped = false;
        loop {
            let mut status: CInt = 0;
            // SAFETY: waitpid(2) writes a reaped child's status.
            let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
            if pid <= 0 {
                break;
            }
            reaped = true;
        }
        if sent != 0 {
            // ESRCH: nothing left but us (zombies count until reaped).
            return;
        }
        if !reaped {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The worker's plan (see the module docs).
struct Plan {
    dir: PathBuf,
    limit: Duration,
    /// Each command's stderr framed with its stdout (QA's output), not kept
    /// for its end frame.
    merge: bool,
    /// No command after the first that exits non-zero (QA stops there).
    stop_on_failure: bool,
    /// The commands run at once, not one after the other (the agent's
    /// export and leftovers: see the module docs).
    parallel: bool,
    commands: Vec<Vec<OsString>>,
}

fn read_plan(file: &Path) -> Result<Plan, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut args = decode_argv(&bytes)?.into_iter();
    let mut next = || args.next().ok_or_else(|| "the plan ends early".to_string());
    let number = |a: OsString| -> Result<u64, String> {
        a.to_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not a number: {a:?}"))
    };
    let version = next()?;
    if version != "1" && version != "2" {
        return Err("not a version 1 or 2 plan".into());
    }
    let dir = PathBuf::from(next()?);
    let limit = Duration::from_millis(number(next()?)?);
    let flags = if version == "2" { next()? } else { OsString::new() };
    let flags = flags.to_string_lossy();
    let n = number(next()?)?;
    let mut commands = Vec::new();
    for _ in 0..n {
        let argc = number(next()?)?;
        let cmd: Vec<OsString> = (0..argc).map(|_| next()).collect::<Result<_, _>>()?;
        if cmd.is_empty() {
            return Err("an empty command".into());
        }
        commands.push(cmd);
    }
    Ok(Plan {
        dir,
        limit,
        merge: flags.contains('m'),
        // Stopping at a failure needs one command after another.
        stop_on_failure: flags.contains('s'),
        parallel: flags.contains('p') && !flags.contains('s'),
        commands,
    })
}

/// `dir/.git/HEAD`, when `.git` is a directory, is a plain file or missing.
fn head_is_plain(dir: &Path) -> bool {
    match std::fs::symlink_metadata(dir.join(".git")) {
        Ok(m) if m.is_dir() => match std::fs::symlink_metadata(dir.join(".git/HEAD")) {
            Ok(h) => h.file_type().is_file(),
            Err(_) => true,
        },
        _ => true,
    }
}

/// The container's stdout, written by the watchdog only.
fn channel() -> ManuallyDrop<File> {
    // SAFETY: fd 1 stays open for the process's life; ManuallyDrop never
    // closes it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(1) })
}

/// The channel as the commands' readers share it: each frame is written
/// whole under the lock, so frames of commands run at once interleave but
/// never mix.
struct Channel(Mutex<ManuallyDrop<File>>);

impl Channel {
    fn frame(&self, kind: u8, section: u8, payload: &[&[u8]]) -> std::io::Result<()> {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        frame(&mut out, kind, section, payload)
    }
}

fn frame(out: &mut File, kind: u8, section: u8, payload: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    let mut head = vec![kind, section];
    head.extend_from_slice(&(len as u32).to_be_bytes());
    out.write_all(&head)?;
    for p in payload {
        out.write_all(p)?;
    }
    Ok(())
}

/// After the agent: everyone else killed, then each of the plan's commands,
/// its stdout framed on the channel. Errors are said on stderr (the log);
/// the worker, missing a section's end, falls back to its own export.
///
/// `exit`, the agent's exit code (as the watchdog will exit with it): once
/// every command has run, it goes on the channel too, as the end frame of
/// the section after the commands' (code only), so the worker has the run's
/// whole result without waiting for Docker to report the container's exit.
pub(crate) fn run_after(plan_file: &Path, exit: Option<i32>) {
    if !is_init() {
        eprintln!("agentq-watchdog: --after needs PID 1 of a container; nothing exported");
        return;
    }
    kill_all();
    let plan = match read_plan(plan_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("agentq-watchdog: no export: {e}");
            return;
        }
    };
    if !head_is_plain(&plan.dir) {
        return;
    }
    let out = Channel(Mutex::new(channel()));
    let mut all_ran = true;
    if plan.parallel {
        kill_all();
        if SIGNALLED.load(Ordering::SeqCst) {
            all_ran = false;
        } else {
            let (out, plan) = (&out, &plan);
            let ran: Vec<std::io::Result<i32>> = std::thread::scope(|s| {
                let each: Vec<_> = plan
                    .commands
                    .iter()
                    .enumerate()
                    .map(|(i, cmd)| s.spawn(move || run_one(out, i as u8, cmd, plan, false)))
                    .collect();
                each.into_iter()
                    .map(|t| {
                        t.join()
                            .unwrap_or_else(|_| Err(std::io::Error::other("a reader panicked")))
                    })
                    .collect()
            });
            if let Some(Err(e)) = ran.into_iter().find(Result::is_err) {
                eprintln!("agentq-watchdog: cannot write the export: {e}");
                kill_all();
                return;
            }
        }
    } else {
        for (i, cmd) in plan.commands.iter().enumerate() {
            kill_all();
            if SIGNALLED.load(Ordering::SeqCst) {
                // `docker stop`: nothing more runs.
                all_ran = false;
                break;
            }
            match run_one(&out, i as u8, cmd, &plan, true) {
                Ok(0) => {}
                Ok(_) if plan.stop_on_failure => {
                    all_ran = false;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("agentq-watchdog: cannot write the export: {e}");
                    return;
                }
            }
        }
    }
    kill_all();
    if let (Some(code), true) = (exit, all_ran) {
        let section = plan.commands.len() as u8;
        // As the kernel reports the watchdog's exit with it: its low byte.
        let code = code & 0xff;
        if let Err(e) = out.frame(b'E', section, &[&code.to_be_bytes()]) {
            eprintln!("agentq-watchdog: cannot write the agent's exit code: {e}");
        }
    }
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> std::io::Result<(File, OwnedFd)> {
    let mut fds: [CInt; 2] = [-1, -1];
    // SAFETY: pipe2(2) writes two new descriptors into `fds`.
    if unsafe { pipe2(fds.as_mut_ptr(), O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and are owned here only.
    unsafe { Ok((File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// Runs one command of the plan, its output framed as `section`; returns
/// its exit code (as written in its end frame). `alone`: nothing else runs
/// meanwhile, so what the command leaves behind is killed with everything
/// but the watchdog ([`kill_all`]); beside another command (a parallel
/// plan), only its own process group is, and what left the group goes at
/// the plan's end or at the time limit.
fn run_one(
    out: &Channel,
    section: u8,
    cmd: &[OsString],
    plan: &Plan,
    alone: bool,
) -> std::io::Result<i32> {
    let (mut stdout, write) = pipe()?;
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..])
        .current_dir(&plan.dir)
        .stdin(Stdio::null())
        .process_group(0);
    if plan.merge {
        c.stderr(Stdio::from(write.try_clone()?));
    } else {
        c.stderr(Stdio::piped());
    }
    c.stdout(Stdio::from(write));
    let spawned = c.spawn();
    // The pipe's write ends are the command's only from here.
    drop(c);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let code: i32 = if e.kind() == ErrorKind::NotFound { 127 } else { 126 };
            let why = format!("cannot run {:?}: {e}", cmd[0]);
            out.frame(b'E', section, &[&code.to_be_bytes(), why.as_bytes()])?;
            return Ok(code);
        }
    };
    let stderr = child.stderr.take();
    let errs = std::thread::spawn(move || {
        let (mut kept, mut buf) = (Vec::new(), [0u8; 4096]);
        let Some(mut stderr) = stderr else {
            return kept;
        };
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = STDERR_KEPT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        kept
    });
    // The time limit: past it, everyone but us is killed (the command, and
    // whatever it left holding its pipes), which ends the reads below.
    let (done, past) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    {
        let (done, past, limit) = (done.clone(), past.clone(), plan.limit);
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while !done.load(Ordering::SeqCst) {
                if SIGNALLED.load(Ordering::SeqCst) {
                    kill_all_now();
                    return;
                }
                if Instant::now() >= deadline {
                    past.store(true, Ordering::SeqCst);
                    kill_all_now();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    let mut buf = vec![0u8; CHUNK];
    let mut write_err = None;
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if write_err.is_none() {
                    write_err = out.frame(b'D', section, &[&buf[..n]]).err();
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let group = child.id() as CInt;
    let status = child.wait();
    // Whatever the command left behind holding stderr goes now.
    if alone {
        kill_all();
    } else {
        // SAFETY: kill(2) of the command's own process group (it was made
        // its leader); reaped with everything else at the plan's end.
        unsafe {
            kill(-group, SIGKILL);
        }
    }
    let kept = errs.join().unwrap_or_default();
    // The time limit holds until stderr is read to its end: a process that
    // left the group and holds it is killed there.
    done.store(true, Ordering::SeqCst);
    if let Some(e) = write_err {
        return Err(e);
    }
    let code = if past.load(Ordering::SeqCst) {
        TIMED_OUT
    } else {
        status.map(code_of).unwrap_or(1)
    };
    out.frame(b'E', section, &[&code.to_be_bytes(), &kept])?;
    Ok(code)
}

/// SIGKILL to every process but us, without reaping (the main thread
/// reaps); from the timer thread.
fn kill_all_now() {
    if is_init() {
        // SAFETY: as in kill_all.
        unsafe {
            kill(-1, SIGKILL);
        }
    }
}
