//! The dead-man switch: an agent container cannot outlive its worker.
//!
//! Without it, a worker killed with `kill -9` (or cut off from Redis) leaves its
//! agent containers running, and committing, while another worker runs the same
//! job again. With it, the container's process is `agentq-watchdog`
//! (`worker/watchdog/main.rs`, built by `build.rs` as a static executable and
//! embedded here as [`WATCHDOG`]), which runs the agent command and stops it once
//! the run's heartbeat file has not been touched for a while:
//!
//! 1. [`install`](fn@install) writes the watchdog to `{root}/.agentq-run/bin/` on the host.
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

mod beat;
mod dirs;
mod install;

pub use self::{beat::Beat, install::install};

/// The watchdog executable (static, std only), built from `worker/watchdog/main.rs`.
pub const WATCHDOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agentq-watchdog"));

/// The worker's directory for the switch, under the root given to [`install`](fn@install)
/// and [`Beat::create`].
pub const RUN_DIR: &str = ".agentq-run";

#[cfg(test)]
mod tests;
