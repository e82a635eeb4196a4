//! The dead-man switch around every container, and the held container that
//! waits for its command.

use std::{path::Path, time::Duration};

use bollard::models::{ContainerCreateBody, Mount};

use super::body::bind;

/// Where the watchdog's directory is mounted in the container (read-only).
pub const WATCHDOG_MOUNT: &str = "/agentq-bin";
/// Where the run's heartbeat directory is mounted in the container (read-only).
pub const BEAT_MOUNT: &str = "/agentq-beat";
/// The watchdog's file name in [`Watchdog::bin_dir`].
pub const WATCHDOG_EXE: &str = "agentq-watchdog";
/// The heartbeat's file name in [`Watchdog::beat_dir`].
pub const BEAT_FILE: &str = "beat";
/// File in the heartbeat directory that releases a held agent container (see
/// [`held`]): the command, as [`encode_argv`] writes it.
pub const GO_FILE: &str = "go";
/// File in the heartbeat directory with what the watchdog runs after the
/// agent (`--after`): see [`after_plan`](super::after_plan).
pub const AFTER_FILE: &str = "after";

/// The dead-man switch of one container run: the container's process is the
/// watchdog (`{bin_dir}/agentq-watchdog`, from the host, never from the image),
/// which runs the command and stops it once `{beat_dir}/beat` has not been
/// touched for `stale_after`, so the container cannot outlive the worker that
/// touches it.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog<'a> {
    /// Host directory holding the watchdog executable; mounted read-only at
    /// [`WATCHDOG_MOUNT`].
    pub bin_dir: &'a Path,
    /// Host directory of this run's heartbeat file; mounted read-only at
    /// [`BEAT_MOUNT`].
    pub beat_dir: &'a Path,
    /// How old the heartbeat may get before the command is stopped (rounded to
    /// whole milliseconds, at least 1).
    pub stale_after: Duration,
}

impl Watchdog<'_> {
    pub(super) fn mounts(&self) -> [Mount; 2] {
        [
            bind(self.bin_dir, WATCHDOG_MOUNT, true),
            bind(self.beat_dir, BEAT_MOUNT, true),
        ]
    }

    /// The container's entrypoint: the watchdog, its options and `--`; the
    /// command follows as `cmd`.
    pub(super) fn entrypoint(&self) -> Vec<String> {
        let ms = self.stale_after.as_millis().clamp(1, u128::from(u64::MAX));
        vec![
            format!("{WATCHDOG_MOUNT}/{WATCHDOG_EXE}"),
            "--beat".into(),
            format!("{BEAT_MOUNT}/{BEAT_FILE}"),
            "--stale-ms".into(),
            ms.to_string(),
            "--".into(),
        ]
    }
}

/// The same agent container, held: it starts (Docker's slow part) while the
/// workspace is prepared, and its watchdog runs nothing until the worker
/// writes the command to [`GO_FILE`] in the run's heartbeat directory (a
/// directory the container sees read-only and the agent never could write).
/// `None` without a watchdog: such a container can only start when its
/// command is known.
pub fn held(mut body: ContainerCreateBody) -> Option<ContainerCreateBody> {
    let entrypoint = body.entrypoint.as_mut().filter(|e| !e.is_empty())?;
    let dashes = entrypoint.iter().rposition(|a| a == "--")?;
    entrypoint.splice(
        dashes..dashes,
        ["--argv-from".to_string(), format!("{BEAT_MOUNT}/{GO_FILE}")],
    );
    body.cmd = Some(Vec::new());
    Some(body)
}

/// A held container's command (the `cmd` of its unheld body) for [`GO_FILE`]:
/// each argument as its length in bytes, `:`, and the bytes, so that no byte
/// of a prompt can split an argument or start another.
pub fn encode_argv(cmd: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for arg in cmd {
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(arg.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_body_waits_for_its_command_and_the_command_cannot_be_split() {
        let body = ContainerCreateBody {
            entrypoint: Some(vec![
                "/agentq-bin/agentq-watchdog".into(),
                "--beat".into(),
                "/agentq-beat/beat".into(),
                "--".into(),
            ]),
            cmd: Some(vec!["codex".into(), "prompt".into()]),
            ..Default::default()
        };
        let held_body = held(body.clone()).unwrap();
        assert_eq!(
            held_body.entrypoint.unwrap()[3..],
            ["--argv-from", "/agentq-beat/go", "--"]
        );
        assert_eq!(held_body.cmd, Some(vec![]));
        // Without a watchdog there is nothing to hold it.
        let bare = ContainerCreateBody {
            entrypoint: Some(vec![]),
            ..body
        };
        assert!(held(bare).is_none());
        let argv = ["codex".to_string(), "a 3:b\u{0}4:--rm".to_string()];
        assert_eq!(encode_argv(&argv), b"5:codex12:a 3:b\x004:--rm".to_vec());
    }
}
