//! The switch's tests: installing and heartbeats here, the watchdog as a
//! process in `process`, and in real containers in `in_docker`.

use std::{
    fs, io,
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        process::ExitStatusExt,
    },
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use agentq_shared::container::{BEAT_FILE, WATCHDOG_EXE};

use super::*;

mod in_docker;
mod process;

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
            let children =
                fs::read_to_string(format!("/proc/{wd}/task/{wd}/children")).unwrap_or_default();
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
