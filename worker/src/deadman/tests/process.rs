//! The watchdog as a process on the host: heartbeats, signals, a held
//! command, bad usage.

use super::*;

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
    let out =
        bounded(watchdog(&bin, &root.path().join("nope"), 60_000, &["sleep", "60"]).spawn_exe());
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

/// QA's container held (`--after PLAN` and no command): it waits until the
/// worker writes the plan, then reads it (here, not a container's PID 1, it
/// only says it cannot run it); with a stale heartbeat it ends, running
/// nothing.
#[test]
fn a_held_qa_watchdog_waits_for_its_plan() {
    let (root, bin, beat) = setup();
    let file = beat.dir().join(BEAT_FILE);
    let keeper = Keeper::new(file.clone());
    let plan = root.path().join("qa-plan");
    let held = |stale_ms: u64| {
        let mut c = Command::new(bin.join(WATCHDOG_EXE));
        c.arg("--beat")
            .arg(&file)
            .args(["--stale-ms", &stale_ms.to_string(), "--after"])
            .arg(&plan)
            .arg("--")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let mut child = held(5000).spawn_exe();
    wait_catching_sigterm(child.id());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it went on without its plan"
    );
    write_go(&plan, &["2"]);
    let out = bounded(child);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--after needs PID 1"),
        "{}",
        stderr(&out)
    );
    // No plan and the worker gone: it ends by itself.
    fs::remove_file(&plan).unwrap();
    drop(keeper);
    let out = bounded(held(500).spawn_exe());
    assert_eq!(code(&out), 137, "{}", stderr(&out));
    assert!(
        stderr(&out).ends_with("; nothing ran\n"),
        "{}",
        stderr(&out)
    );
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

/// `--after` anywhere but as a container's PID 1 (where `kill(-1)` would be
/// every process of the user) exports nothing: the command keeps its stdout,
/// the plan is never run, and the watchdog says so.
#[test]
fn after_outside_a_container_runs_no_plan_and_leaves_stdout_the_commands() {
    let (root, bin, beat) = setup();
    let file = beat.dir().join(BEAT_FILE);
    let _keeper = Keeper::new(file.clone());
    let marker = root.path().join("plan-ran");
    let plan = agentq_shared::container::encode_argv(
        &["1", "/", "5000", "1", "2", "touch"]
            .iter()
            .map(|s| s.to_string())
            .chain([marker.to_string_lossy().into_owned()])
            .collect::<Vec<_>>(),
    );
    let plan_file = root.path().join("after");
    fs::write(&plan_file, plan).unwrap();
    let mut c = Command::new(bin.join(WATCHDOG_EXE));
    c.arg("--beat")
        .arg(&file)
        .args(["--stale-ms", "5000", "--after"])
        .arg(&plan_file)
        .args(["--", "sh", "-c", "echo out; exit 4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = bounded(c.spawn_exe());
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(
        stderr(&out).contains("--after needs PID 1 of a container"),
        "{}",
        stderr(&out)
    );
    assert!(!marker.exists(), "the plan ran outside a container");
}
