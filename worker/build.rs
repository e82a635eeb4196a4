//! Builds `watchdog/main.rs` (std only) as a static executable,
//! `$OUT_DIR/agentq-watchdog`, which `src/deadman.rs` embeds and installs on the
//! host for agent containers to run from a read-only mount (see that module).

use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=watchdog/main.rs");
    println!("cargo:rerun-if-changed=watchdog/after.rs");
    println!("cargo:rerun-if-changed=watchdog/open_root.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let exe = out.join("agentq-watchdog");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let source = manifest.join("watchdog").join("main.rs");
    let mut cmd = Command::new(&rustc);
    cmd.args([
        "-O",
        "-C",
        "target-feature=+crt-static",
        "-C",
        "strip=symbols",
        "--edition",
        "2021",
        "--crate-name",
        "agentq_watchdog",
        "--crate-type",
        "bin",
    ]);
    // The worker's own target: the watchdog runs on the same machine's kernel.
    if let Some(target) = env::var_os("TARGET") {
        cmd.arg("--target").arg(target);
    }
    cmd.arg("-o").arg(&exe).arg(&source);
    let output = cmd.output().unwrap_or_else(|e| {
        panic!(
            "agentq-worker build: cannot run {} to build the watchdog: {e}",
            rustc.to_string_lossy()
        )
    });
    if !output.status.success() {
        panic!(
            "agentq-worker build: the watchdog (worker/watchdog/main.rs) did not compile as a \
             static executable ({:?} exited {}). A static C library for the target is needed \
             (glibc: libc6-dev; musl targets have it built in).\n{}",
            cmd,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Warnings would otherwise go unseen.
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        if !line.trim().is_empty() {
            println!("cargo:warning=watchdog: {line}");
        }
    }
}
