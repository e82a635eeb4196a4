//! The dead-man switch: an agent container cannot outlive its worker.
//!
//! Without it, a worker killed with `kill -9` (or cut off from Redis) leaves its
//! agent containers running, and committing, while another worker runs the same
//! job again. With it, the container's process is `agentq-watchdog`
//! (`worker/watchdog/main.rs`, built by `build.rs` as a static executable and
//! embedded here as [`WATCHDOG`]), which runs the agent command and stops it once
//! the run's heartbeat file has not been touched for a while:
//!
//! 1. [`install`] writes the watchdog to `{root}/.agentq-run/bin/` on the host.
//!    The container mounts that directory read-only at `/agentq-bin`, so the
//!    watchdog never comes from the image and the agent cannot replace it.
//! 2. [`Beat::create`] makes `{root}/.agentq-run/beat/{name}/beat` for one
//!    container run, mounted read-only at `/agentq-beat`. The worker calls
//!    [`Beat::touch`] while it still owns the run (a fraction of the stale limit
//!    apart) and stops once it has lost it (its lease expired, Redis is
//!    unreachable); when the worker dies the touches stop by themselves.
//! 3. [`agentq_shared::container::Watchdog`] in the `ContainerJob` wires both
//!    mounts and the watchdog as entrypoint into the agent, QA and export
//!    containers.
//!
//! Once the file is older than the limit (or gone: dropping the [`Beat`] removes
//! its directory, so the container's view of it is empty), the watchdog sends
//! SIGTERM to the agent's process group, SIGKILL a second later, and exits 137.
//! The watchdog is the container's PID 1 (no tini), so its exit ends the
//! container and the kernel kills whatever is left in its PID namespace.
//!
//! The directories are the worker's, mode 0755, and the files 0755 (watchdog) and
//! 0644 (heartbeat): the agent, running as another uid, can read and run them but
//! not change them. The watchdog runs as the agent's uid, but as PID 1 of the
//! container's PID namespace: the kernel delivers no signal from inside the
//! namespace to its init unless the init handles it, so the agent's SIGSTOP and
//! SIGKILL never reach it (what it handles, SIGTERM/SIGINT/SIGHUP, only makes
//! it stop the agent), and it is non-dumpable, so the agent cannot ptrace it.
//! An agent that sets out to disable it cannot; the worker's death still ends
//! the container.

// Not yet called by the job runner (`job.rs` is wired up separately); the tests
// use everything.

use std::{
    fs, io,
    io::Write,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use agentq_shared::container::{BEAT_FILE, WATCHDOG_EXE};

/// The watchdog executable (static, std only), built from `worker/watchdog/main.rs`.
pub const WATCHDOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agentq-watchdog"));

/// The worker's directory for the switch, under the root given to [`install`]
/// and [`Beat::create`].
pub const RUN_DIR: &str = ".agentq-run";

const DIR_MODE: u32 = 0o755;
const EXE_MODE: u32 = 0o755;
const BEAT_MODE: u32 = 0o644;

fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Makes `dir` (whose parent exists) a directory of the worker's with mode 0755,
/// or checks that it already is one: a real directory (not a symlink), owned by
/// the worker's uid. Fixes its mode whatever the umask.
fn own_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != euid() {
        return Err(io::Error::other(format!(
            "{} is owned by uid {}, not by the worker (uid {})",
            dir.display(),
            meta.uid(),
            euid()
        )));
    }
    if meta.mode() & 0o7777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// `{root}/.agentq-run`, made if missing (and `root` too).
fn run_dir(root: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(root)?;
    let run = root.join(RUN_DIR);
    own_dir(&run)?;
    Ok(run)
}

/// Writes the watchdog to `{root}/.agentq-run/bin/agentq-watchdog` (mode 0755)
/// and returns that directory, for [`agentq_shared::container::Watchdog::bin_dir`].
///
/// Does nothing when the file is already there with the same content and mode.
/// Otherwise the new file is written beside it and renamed over it, so containers
/// running the old one keep it and others never see half a file. Safe to call
/// from several tasks and workers at once.
///
/// # Errors
/// Files that cannot be written, or a directory on the path that is a symlink,
/// not a directory or not owned by the worker's uid.
pub fn install(root: &Path) -> io::Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let bin = run_dir(root)?.join("bin");
    own_dir(&bin)?;
    let exe = bin.join(WATCHDOG_EXE);
    if let Ok(meta) = fs::symlink_metadata(&exe) {
        if meta.is_file()
            && meta.uid() == euid()
            && meta.mode() & 0o7777 == EXE_MODE
            && meta.len() == WATCHDOG.len() as u64
            && fs::read(&exe)? == WATCHDOG
        {
            return Ok(bin);
        }
    }
    let tmp = bin.join(format!(
        ".{WATCHDOG_EXE}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(EXE_MODE)
            .open(&tmp)?;
        file.write_all(WATCHDOG)?;
        file.set_permissions(fs::Permissions::from_mode(EXE_MODE))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &exe)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| bin)
}

/// The heartbeat of one container run: `{root}/.agentq-run/beat/{name}/beat`.
///
/// The worker touches it while it owns the run; the container's watchdog stops
/// the agent once it is older than the limit or gone. Dropping the `Beat`
/// removes its directory, which stops a container still using it.
#[derive(Debug)]
pub struct Beat {
    dir: PathBuf,
    file: PathBuf,
}

impl Beat {
    /// Makes the run's heartbeat directory and file (touched now); `name` is
    /// `[A-Za-z0-9_-]+`, e.g. `{job_id}-{attempt}-{stage}`. A directory left by
    /// an earlier run of the same name is reused.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name; files that cannot be made; a directory on
    /// the path that is a symlink, not a directory or not the worker's.
    pub fn create(root: &Path, name: &str) -> io::Result<Beat> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("heartbeat name {name:?} is not [A-Za-z0-9_-]+"),
            ));
        }
        let beats = run_dir(root)?.join("beat");
        own_dir(&beats)?;
        let dir = beats.join(name);
        own_dir(&dir)?;
        // From here on, dropping `beat` cleans up.
        let beat = Beat {
            file: dir.join(BEAT_FILE),
            dir,
        };
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(BEAT_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&beat.file)?;
        file.set_permissions(fs::Permissions::from_mode(BEAT_MODE))?;
        file.set_modified(SystemTime::now())?;
        Ok(beat)
    }

    /// The directory to mount: [`agentq_shared::container::Watchdog::beat_dir`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets the heartbeat's modification time to `at` (normally now).
    ///
    /// # Errors
    /// The file is gone or cannot be written.
    pub fn touch(&self, at: SystemTime) -> io::Result<()> {
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.file)?
            .set_modified(at)
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::process::ExitStatusExt,
        process::{Command, Output, Stdio},
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        },
        time::{Duration, Instant},
    };

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    /// A tempdir with the watchdog installed and a fresh heartbeat `t-1-agent`.
    fn setup() -> (tempfile::TempDir, PathBuf, Beat) {
        let root = tempfile::tempdir().unwrap();
        let bin = install(root.path()).unwrap();
        let beat = Beat::create(root.path(), "t-1-agent").unwrap();
        (root, bin, beat)
    }

    /// `spawn`, tried again while the executable is busy: another test's
    /// thread may have forked while this one's install still had the
    /// watchdog open for writing (ETXTBSY until that child execs).
    trait SpawnExe {
        fn spawn_exe(&mut self) -> std::process::Child;
    }

    impl SpawnExe for Command {
        fn spawn_exe(&mut self) -> std::process::Child {
            let mut tries = 0;
            loop {
                match self.spawn() {
                    Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    other => return other.unwrap(),
                }
            }
        }
    }

    fn watchdog(bin: &Path, beat: &Path, stale_ms: u64, cmd: &[&str]) -> Command {
        let mut c = Command::new(bin.join(WATCHDOG_EXE));
        c.arg("--beat")
            .arg(beat)
            .args(["--stale-ms", &stale_ms.to_string(), "--"])
            .args(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Waits for the watchdog, at most 30 s: past that it and its command's group
    /// are killed and the test fails, rather than hanging.
    fn bounded(mut child: std::process::Child) -> Output {
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let wd = child.id();
                let children = fs::read_to_string(format!("/proc/{wd}/task/{wd}/children"))
                    .unwrap_or_default();
                for pid in children.split_whitespace() {
                    let pid: i32 = pid.parse().unwrap();
                    // SAFETY: kill(2) on the group of the watchdog's own command.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the watchdog still ran after 30 s; stderr: {}",
                    stderr(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    fn code(out: &Output) -> i32 {
        out.status.code().unwrap_or_else(|| {
            panic!(
                "the watchdog itself was killed by signal {:?}",
                out.status.signal()
            )
        })
    }

    fn stderr(out: &Output) -> String {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Touches the beat every 100 ms until dropped.
    struct Keeper(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);
    impl Keeper {
        fn new(file: PathBuf) -> Keeper {
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let h = std::thread::spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    let _ = fs::File::options()
                        .write(true)
                        .open(&file)
                        .and_then(|f| f.set_modified(SystemTime::now()));
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            Keeper(stop, Some(h))
        }
    }
    impl Drop for Keeper {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
            if let Some(h) = self.1.take() {
                let _ = h.join();
            }
        }
    }

    /// Whether a pid is gone (or only a zombie awaiting its new parent's reaping).
    fn gone(pid: i32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        }
    }

    fn wait_for_file(p: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = fs::read_to_string(p) {
                if s.ends_with('\n') {
                    return s.trim().to_string();
                }
            }
            assert!(Instant::now() < deadline, "{} never appeared", p.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn install_writes_a_static_executable_once() {
        let root = tempfile::tempdir().unwrap();
        let bin = install(root.path()).unwrap();
        assert_eq!(bin, root.path().join(".agentq-run/bin"));
        let exe = bin.join(WATCHDOG_EXE);
        assert_eq!(fs::read(&exe).unwrap(), WATCHDOG);
        assert_eq!(WATCHDOG[..4], *b"\x7fELF");
        assert_eq!(mode(&exe), 0o755);
        assert_eq!(mode(&bin), 0o755);
        assert_eq!(mode(&root.path().join(RUN_DIR)), 0o755);
        let ino = fs::metadata(&exe).unwrap().ino();
        assert_eq!(install(root.path()).unwrap(), bin);
        assert_eq!(
            fs::metadata(&exe).unwrap().ino(),
            ino,
            "same content: not rewritten"
        );
        fs::write(&exe, b"old").unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o777)).unwrap();
        install(root.path()).unwrap();
        assert_eq!(fs::read(&exe).unwrap(), WATCHDOG, "other content: replaced");
        assert_eq!(mode(&bin), 0o755, "a loosened directory is fixed");
        let names: Vec<_> = fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [WATCHDOG_EXE], "no temporary files left");
    }

    #[test]
    fn install_refuses_a_symlinked_run_dir() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join(RUN_DIR)).unwrap();
        let err = install(root.path()).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert!(Beat::create(root.path(), "x").is_err());
    }

    #[test]
    fn a_beat_is_made_touched_and_removed() {
        let root = tempfile::tempdir().unwrap();
        for bad in ["", "a/b", "..", "a b", "j.1", "é"] {
            let err = Beat::create(root.path(), bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let before = SystemTime::now() - Duration::from_secs(1);
        let beat = Beat::create(root.path(), "01J-2_agent").unwrap();
        let dir = beat.dir().to_path_buf();
        assert_eq!(dir, root.path().join(".agentq-run/beat/01J-2_agent"));
        let file = dir.join(BEAT_FILE);
        assert!(fs::metadata(&file).unwrap().modified().unwrap() >= before);
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(dir.parent().unwrap()), 0o755);
        assert_eq!(mode(&file), 0o644);
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        beat.touch(then).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), then);
        drop(beat);
        assert!(!dir.exists(), "dropping the beat removes its directory");
    }

    #[test]
    fn a_fresh_heartbeat_lets_the_command_finish_with_its_code() {
        let (_root, bin, beat) = setup();
        let file = beat.dir().join(BEAT_FILE);
        let _keeper = Keeper::new(file.clone());
        let out = bounded(
            watchdog(
                &bin,
                &file,
                3000,
                &["sh", "-c", "echo out; sleep 1; exit 7"],
            )
            .spawn_exe(),
        );
        assert_eq!(code(&out), 7, "{}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "out\n",
            "stdout is the command's"
        );
        assert_eq!(stderr(&out), "", "nothing to say");
    }

    #[test]
    fn stdin_from_gives_the_command_a_file_of_any_size_and_e2big_says_why() {
        let (root, bin, beat) = setup();
        let file = beat.dir().join(BEAT_FILE);
        let _keeper = Keeper::new(file.clone());
        let prompt = root.path().join("prompt.md");
        fs::write(&prompt, "p".repeat(1024 * 1024)).unwrap();
        let mut c = Command::new(bin.join(WATCHDOG_EXE));
        c.arg("--beat")
            .arg(&file)
            .args(["--stale-ms", "5000", "--stdin-from"])
            .arg(&prompt)
            .args(["--", "wc", "-c"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = bounded(c.spawn_exe());
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1048576");
        // The same prompt as one argument: the kernel refuses it, and the
        // watchdog says why, not only 126.
        // (Given by the go file: this test could not exec the watchdog with it.)
        let big = "p".repeat(141 * 1000);
        let go = root.path().join("go");
        write_go(&go, &["echo", &big]);
        let out = bounded(held_watchdog(&bin, &file, 5000, &go).spawn_exe());
        assert_eq!(code(&out), 126);
        assert!(
            stderr(&out).contains(
                "argument 1, the prompt most likely, is 141 KB, over the 128 KiB the kernel allows in one argument"
            ),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn a_stale_heartbeat_stops_the_command_and_its_group() {
        let (root, bin, beat) = setup();
        let file = beat.dir().join(BEAT_FILE);
        let (child, grandchild) = (root.path().join("child"), root.path().join("grandchild"));
        let script = format!(
            "sleep 60 & echo $! > '{}'; echo $$ > '{}'; wait",
            grandchild.display(),
            child.display()
        );
        let started = Instant::now();
        let out = bounded(watchdog(&bin, &file, 1000, &["sh", "-c", &script]).spawn_exe());
        let took = started.elapsed();
        assert_eq!(code(&out), 137, "{}", stderr(&out));
        assert!(took < Duration::from_secs(20), "took {took:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("agentq-watchdog: the worker's heartbeat is ")
                && err.ends_with(" ms old (limit 1000 ms); stopping the agent\n")
                && err.lines().count() == 1,
            "{err}"
        );
        for f in [child, grandchild] {
            let pid: i32 = wait_for_file(&f).parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while !gone(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(gone(pid), "{} ({pid}) still runs", f.display());
        }
    }

    #[test]
    fn a_missing_heartbeat_stops_the_command() {
        let (root, bin, _beat) = setup();
        let started = Instant::now();
        let out = bounded(
            watchdog(&bin, &root.path().join("nope"), 60_000, &["sleep", "60"]).spawn_exe(),
        );
        assert_eq!(code(&out), 137, "{}", stderr(&out));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(
            stderr(&out),
            "agentq-watchdog: the worker's heartbeat file is missing (limit 60000 ms); \
             stopping the agent\n"
        );
    }

    #[test]
    fn sigterm_is_passed_to_the_command() {
        let (root, bin, beat) = setup();
        let file = beat.dir().join(BEAT_FILE);
        let _keeper = Keeper::new(file.clone());
        let ready = root.path().join("ready");
        let script = format!(
            "trap 'exit 3' TERM; echo > '{}'; while :; do sleep 0.1; done",
            ready.display()
        );
        let child = watchdog(&bin, &file, 5000, &["sh", "-c", &script]).spawn_exe();
        wait_for_file(&ready);
        // SAFETY: signals the watchdog we just started (still unreaped).
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let out = bounded(child);
        assert_eq!(code(&out), 3, "{}", stderr(&out));
    }

    #[test]
    fn a_command_killed_by_a_signal_gives_128_plus_it() {
        let (_root, bin, beat) = setup();
        let file = beat.dir().join(BEAT_FILE);
        let _keeper = Keeper::new(file.clone());
        let out = bounded(watchdog(&bin, &file, 5000, &["sh", "-c", "kill -USR1 $$"]).spawn_exe());
        assert_eq!(code(&out), 128 + libc::SIGUSR1, "{}", stderr(&out));
    }

    /// A held watchdog: its command comes from `go` once that file exists.
    fn held_watchdog(bin: &Path, beat: &Path, stale_ms: u64, go: &Path) -> Command {
        let mut c = Command::new(bin.join(WATCHDOG_EXE));
        c.arg("--beat")
            .arg(beat)
            .args(["--stale-ms", &stale_ms.to_string(), "--argv-from"])
            .arg(go)
            .arg("--")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Waits until process `pid` catches SIGTERM (its handlers are in place).
    fn wait_catching_sigterm(pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let caught = status
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .unwrap_or(0);
            if caught & (1 << (libc::SIGTERM - 1)) != 0 {
                return;
            }
            assert!(Instant::now() < deadline, "{pid} never caught SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes `go` whole, by a rename, as the worker does.
    fn write_go(go: &Path, argv: &[&str]) {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let tmp = go.with_extension("tmp");
        fs::write(&tmp, agentq_shared::container::encode_argv(&argv)).unwrap();
        fs::rename(&tmp, go).unwrap();
    }

    #[test]
    fn a_held_watchdog_runs_the_command_written_later() {
        let (root, bin, beat) = setup();
        let file = beat.dir().join(BEAT_FILE);
        let _keeper = Keeper::new(file.clone());
        let go = root.path().join("go");
        let child = held_watchdog(&bin, &file, 3000, &go).spawn_exe();
        wait_catching_sigterm(child.id());
        std::thread::sleep(Duration::from_millis(300));
        write_go(
            &go,
            &[
                "sh",
                "-c",
                "echo \"$1\"; exit 7",
                "sh",
                "one arg; not $(two)",
            ],
        );
        let out = bounded(child);
        assert_eq!(code(&out), 7, "{}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "one arg; not $(two)\n"
        );
    }

    #[test]
    fn a_held_watchdog_whose_worker_died_ends_without_running_anything() {
        // The worker was killed while it prepared the workspace: the heartbeat
        // goes stale and no command was ever written.
        let (root, bin, beat) = setup();
        let file = beat.dir().join(BEAT_FILE);
        let go = root.path().join("go");
        let started = Instant::now();
        let out = bounded(held_watchdog(&bin, &file, 1000, &go).spawn_exe());
        assert_eq!(code(&out), 137, "{}", stderr(&out));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(
            stderr(&out).ends_with("; the agent never started\n"),
            "{}",
            stderr(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        // A command written after that runs nowhere.
        write_go(&go, &["sh", "-c", "echo late > late"]);
        assert!(!root.path().join("late").exists());
    }

    #[test]
    fn a_held_watchdog_ends_on_a_stop_signal() {
        let (root, bin, beat) = setup();
        let file = beat.dir().join(BEAT_FILE);
        let _keeper = Keeper::new(file.clone());
        let child = held_watchdog(&bin, &file, 5000, &root.path().join("go")).spawn_exe();
        wait_catching_sigterm(child.id());
        // SAFETY: signals the watchdog we just started (still unreaped).
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let out = bounded(child);
        assert_eq!(code(&out), 128 + libc::SIGTERM, "{}", stderr(&out));
    }

    #[test]
    fn a_held_watchdog_refuses_a_command_it_cannot_read_whole() {
        let (root, bin, beat) = setup();
        let file = beat.dir().join(BEAT_FILE);
        let _keeper = Keeper::new(file.clone());
        let go = root.path().join("go");
        fs::write(&go, b"9:short").unwrap();
        let out = bounded(held_watchdog(&bin, &file, 5000, &go).spawn_exe());
        assert_eq!(code(&out), 125, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("shorter than its length"),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn bad_usage_exits_125() {
        let (_root, bin, beat) = setup();
        let exe = bin.join(WATCHDOG_EXE);
        let file = beat.dir().join(BEAT_FILE);
        let f = file.to_str().unwrap();
        for args in [
            vec![],
            vec!["--beat", f, "--stale-ms", "1000"],
            vec!["--beat", f, "--stale-ms", "1000", "--"],
            vec!["--stale-ms", "1000", "--", "true"],
            vec!["--beat", f, "--", "true"],
            vec!["--beat", f, "--stale-ms", "0", "--", "true"],
            vec!["--beat", f, "--stale-ms", "soon", "--", "true"],
            vec!["--beat", f, "--stale-ms", "1000", "--verbose", "--", "true"],
            vec!["--beat"],
        ] {
            let out = Command::new(&exe).args(&args).output().unwrap();
            assert_eq!(code(&out), 125, "{args:?}");
            assert!(stderr(&out).contains("usage: agentq-watchdog"), "{args:?}");
        }
        let out = Command::new(&exe)
            .args(["--beat", f, "--stale-ms", "1000", "--", "/no/such/agent"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 127, "{}", stderr(&out));
    }

    /// The switch in real containers: the agentq test image, a non-root user,
    /// the watchdog and heartbeat from a tempdir on the host. Needs a Docker
    /// engine and `scripts/build-test-images`; fails (never skips) without them.
    mod in_docker {
        use agentq_shared::{
            agent::AgentSpec,
            config::Config,
            container::{qa_container, ContainerJob, Watchdog},
        };
        use bollard::{
            query_parameters::{
                CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
                StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
            },
            Docker,
        };
        use futures::StreamExt;

        use super::*;

        const IMAGE: &str = "agentq-test-agent:latest";

        async fn engine() -> Docker {
            let docker = crate::docker::connect()
                .await
                .unwrap_or_else(|e| panic!("the dead-man tests need a Docker engine: {e}"));
            if let Err(e) = docker.inspect_image(IMAGE).await {
                panic!("{IMAGE} is missing ({e}); run scripts/build-test-images");
            }
            docker
        }

        /// One container run: its own root with the watchdog and heartbeat.
        struct Run {
            beat: Option<Beat>,
            bin: PathBuf,
            root: tempfile::TempDir,
        }

        impl Run {
            fn new() -> Run {
                let root = tempfile::tempdir().unwrap();
                let bin = install(root.path()).unwrap();
                let beat = Beat::create(root.path(), "01TEST-1-qa").unwrap();
                for d in ["repo", "input"] {
                    let p = root.path().join(d);
                    fs::create_dir(&p).unwrap();
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
                }
                Run {
                    beat: Some(beat),
                    bin,
                    root,
                }
            }

            fn beat_file(&self) -> PathBuf {
                self.beat.as_ref().unwrap().dir().join(BEAT_FILE)
            }

            /// Creates and starts the container; returns its id.
            async fn start(&self, docker: &Docker, stale_after: Duration, cmd: &[&str]) -> String {
                let mut cfg = Config::default();
                cfg.docker.image = IMAGE.into();
                cfg.docker.network = "none".into();
                let agent = AgentSpec::parse("codex").unwrap();
                let repo = self.root.path().join("repo");
                let input = self.root.path().join("input");
                let job = ContainerJob {
                    job_id: "01TEST",
                    attempt: 1,
                    worker_id: "deadman-test",
                    namespace: "agentq-deadman-test",
                    agent: &agent,
                    prompt: "",
                    repo_dir: &repo,
                    input_dir: &input,
                    out_dir: None,
                    user: "1000:1000".into(),
                    watchdog: Some(Watchdog {
                        bin_dir: &self.bin,
                        beat_dir: self.beat.as_ref().unwrap().dir(),
                        stale_after,
                    }),
                };
                let mut body =
                    qa_container(&cfg, &job, cmd.iter().map(|s| s.to_string()).collect());
                // The engine keeps the output, so the test can read what the
                // watchdog said.
                body.host_config.as_mut().unwrap().log_config = None;
                let name = format!(
                    "agentq-deadman-test-{}-{}",
                    std::process::id(),
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                );
                let opts = CreateContainerOptionsBuilder::new().name(&name).build();
                let id = docker.create_container(Some(opts), body).await.unwrap().id;
                if let Err(e) = docker
                    .start_container(
                        &id,
                        None::<bollard::query_parameters::StartContainerOptions>,
                    )
                    .await
                {
                    remove(docker, &id).await;
                    panic!("cannot start the container: {e}");
                }
                id
            }
        }

        async fn remove(docker: &Docker, id: &str) {
            let opts = RemoveContainerOptionsBuilder::new().force(true).build();
            let _ = docker.remove_container(id, Some(opts)).await;
        }

        /// Waits up to `within` for the container to end; returns its exit code
        /// and output, and removes it whatever happens.
        async fn finish(docker: &Docker, id: &str, within: Duration) -> (i64, String) {
            let opts = WaitContainerOptionsBuilder::new()
                .condition("not-running")
                .build();
            let waited =
                tokio::time::timeout(within, docker.wait_container(id, Some(opts)).next()).await;
            let mut logs = String::new();
            let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
            let mut stream = docker.logs(id, Some(opts));
            while let Some(Ok(chunk)) = stream.next().await {
                logs.push_str(&chunk.to_string());
            }
            remove(docker, id).await;
            let code = match waited {
                Err(_) => panic!("the container still ran after {within:?}; output:\n{logs}"),
                Ok(Some(Ok(r))) => r.status_code,
                Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError {
                    code, ..
                }))) => code,
                Ok(other) => panic!("waiting for the container: {other:?}; output:\n{logs}"),
            };
            (code, logs)
        }

        #[tokio::test]
        async fn a_container_whose_heartbeat_goes_stale_is_stopped() {
            let docker = engine().await;
            let run = Run::new();
            let started = Instant::now();
            let id = run
                .start(&docker, Duration::from_secs(2), &["sleep", "300"])
                .await;
            let (code, logs) = finish(&docker, &id, Duration::from_secs(30)).await;
            let took = started.elapsed();
            assert_eq!(code, 137, "{logs}");
            assert!(
                logs.contains("agentq-watchdog: the worker's heartbeat is ")
                    && logs.contains(" ms old (limit 2000 ms); stopping the agent"),
                "stopped for the stale heartbeat, not another reason: {logs}"
            );
            assert!(took < Duration::from_secs(30), "took {took:?}");
        }

        #[tokio::test]
        async fn a_fresh_heartbeat_lets_the_container_finish() {
            let docker = engine().await;
            let run = Run::new();
            let _keeper = Keeper::new(run.beat_file());
            let id = run
                .start(
                    &docker,
                    Duration::from_secs(2),
                    &["sh", "-c", "sleep 4; id -u; exit 5"],
                )
                .await;
            let (code, logs) = finish(&docker, &id, Duration::from_secs(60)).await;
            assert_eq!(code, 5, "{logs}");
            assert_eq!(logs.trim(), "1000", "runs as the job's user, says nothing");
        }

        #[tokio::test]
        async fn docker_stop_reaches_the_command_through_the_watchdog_as_pid_1() {
            let docker = engine().await;
            let run = Run::new();
            let _keeper = Keeper::new(run.beat_file());
            let id = run
                .start(&docker, Duration::from_secs(5), &["sleep", "300"])
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let stopping = Instant::now();
            let opts = StopContainerOptionsBuilder::new().t(20).build();
            let stopped = docker.stop_container(&id, Some(opts)).await;
            let took = stopping.elapsed();
            let (code, logs) = finish(&docker, &id, Duration::from_secs(30)).await;
            stopped.unwrap();
            assert_eq!(code, 128 + 15, "sleep ended by SIGTERM: {logs}");
            assert!(
                took < Duration::from_secs(10),
                "SIGTERM was passed on, not SIGKILL after the grace ({took:?})"
            );
        }

        /// The agent stops every process it may signal (`kill -STOP -1`: all
        /// but itself and the namespace's init) and tries SIGSTOP and SIGKILL
        /// on PID 1: the watchdog is PID 1, so none of it reaches it, and it
        /// still stops the agent once the heartbeat goes stale.
        #[tokio::test]
        async fn an_agent_cannot_stop_its_watchdog() {
            let docker = engine().await;
            let run = Run::new();
            let id = run
                .start(
                    &docker,
                    Duration::from_secs(3),
                    &[
                        "sh",
                        "-c",
                        "kill -STOP -1; kill -STOP 1; kill -KILL 1; echo signalled; sleep 300",
                    ],
                )
                .await;
            let (code, logs) = finish(&docker, &id, Duration::from_secs(60)).await;
            assert_eq!(code, 137, "{logs}");
            assert!(logs.contains("signalled"), "{logs}");
            assert!(
                logs.contains("the worker's heartbeat is "),
                "stopped by the watchdog: {logs}"
            );
        }

        #[tokio::test]
        async fn dropping_the_beat_stops_its_container() {
            let docker = engine().await;
            let mut run = Run::new();
            let keeper = Keeper::new(run.beat_file());
            let id = run
                .start(&docker, Duration::from_secs(600), &["sleep", "300"])
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(keeper);
            run.beat = None;
            let (code, logs) = finish(&docker, &id, Duration::from_secs(30)).await;
            assert_eq!(code, 137, "{logs}");
            assert!(
                logs.contains("heartbeat file is missing"),
                "the mount shows the removed directory as empty: {logs}"
            );
        }
    }
}
