//! The agent container's stdout with `--after`: frames the watchdog writes
//! once the agent is gone (its commits as a bundle, its uncommitted work as
//! a patch), each section written to its file up to a cap. See
//! `worker/watchdog/after.rs` for the channel and why the agent cannot
//! write to it; here its bytes are still untrusted data, parsed with bounds.
//! QA's held container uses the same frames for its commands. With them the
//! run can end before Docker reports the container's exit ([`Ends`]).

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
};

/// The exit code the watchdog gives a command it stopped at its time limit
/// (no process's own).
pub const TIMED_OUT: i64 = -1;
/// Largest end frame: the exit code and at most 4 KiB of stderr, with room.
const MAX_END: usize = 64 * 1024;

/// How one section ended.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// The command's exit code; `None` when its end never came (the
    /// watchdog exported nothing, or was killed): the caller falls back.
    pub code: Option<i64>,
    /// Bytes written to the section's file.
    pub bytes: u64,
    /// Its output went past the cap (the file holds only the cap).
    pub over_cap: bool,
    /// The start of its stderr, lossy.
    pub stderr: String,
}

impl Section {
    /// Ended within its limit (124: it ran past it).
    pub fn ended(&self) -> bool {
        self.code.is_some()
    }

    /// What it captured, as a capture container's result would say it;
    /// `None` when its end never came.
    pub fn captured(&self) -> Option<super::Captured> {
        Some(super::Captured {
            code: self.code?,
            bytes: self.bytes,
            over_cap: self.over_cap,
            stderr: self.stderr.clone(),
        })
    }
}

struct Out {
    path: PathBuf,
    cap: u64,
    file: Option<std::fs::File>,
    section: Section,
}

/// Reads the frames into their files: see the module docs. Shared with the
/// log task that feeds it; [`AfterSink::take`] gives the sections.
#[derive(Clone)]
pub struct AfterSink {
    reader: Arc<Mutex<Reader>>,
    /// Told once the run's result is whole (see [`Ends`]).
    whole: Arc<tokio::sync::Notify>,
    ends: Ends,
}

/// Whether the frames end the run, before Docker reports the container's
/// exit (tens of ms later on a `fuse-overlayfs` host with a network to tear
/// down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ends {
    /// No: the run ends with the container's exit.
    Never,
    /// With the last section's end (QA's plan: each command's output and
    /// exit code are the whole result); the container's log drains beside
    /// what follows.
    WithSections,
    /// With the last section's end and then the agent's exit code, which
    /// the watchdog sends as the end frame of one section more (the run's
    /// whole result); the run still waits for the container's log (the
    /// agent's output, read after the run) to end, which it does as the
    /// watchdog exits.
    WithExit,
}

impl std::fmt::Debug for AfterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterSink")
    }
}

struct Reader {
    outs: Vec<Out>,
    head: Vec<u8>,
    /// The frame being read: kind, section, bytes left.
    frame: Option<(u8, u8, usize)>,
    end: Vec<u8>,
    /// A malformed stream: everything after is ignored, every unended
    /// section stays unended.
    broken: bool,
    /// An exit code is expected after the sections ([`Ends::WithExit`]).
    wants_exit: bool,
    /// The agent's exit code, from the end frame of the section after the
    /// last.
    exit: Option<i64>,
}

impl AfterSink {
    /// Sections in order, each to `path` (replaced) up to `cap` bytes.
    pub fn new(files: Vec<(PathBuf, u64)>) -> Self {
        let outs = files
            .into_iter()
            .map(|(path, cap)| Out {
                path,
                cap,
                file: None,
                section: Section::default(),
            })
            .collect();
        Self {
            reader: Arc::new(Mutex::new(Reader {
                outs,
                head: Vec::new(),
                frame: None,
                end: Vec::new(),
                broken: false,
                wants_exit: false,
                exit: None,
            })),
            whole: Default::default(),
            ends: Ends::Never,
        }
    }

    /// The same sink, ending the run as `ends` says.
    pub fn ending(mut self, ends: Ends) -> Self {
        self.ends = ends;
        if let Ok(mut r) = self.reader.lock() {
            r.wants_exit = ends == Ends::WithExit;
        }
        self
    }

    /// How it ends the run.
    pub fn ends(&self) -> Ends {
        self.ends
    }

    /// Resolves once the run's result is whole (see [`Ends`]), with the
    /// container's exit code as the watchdog gives it (0 after a plan alone);
    /// never for [`Ends::Never`].
    pub async fn whole(&self) -> i64 {
        if self.ends == Ends::Never {
            return std::future::pending().await;
        }
        self.whole.notified().await;
        self.reader.lock().ok().and_then(|r| r.exit).unwrap_or(0)
    }

    /// Feeds the next bytes of stdout.
    pub fn push(&self, bytes: &[u8]) {
        if let Ok(mut r) = self.reader.lock() {
            r.push(bytes);
            let sections = !r.outs.is_empty() && r.outs.iter().all(|o| o.section.ended());
            if sections && (!r.wants_exit || r.exit.is_some()) {
                // A permit kept if nobody waits yet.
                self.whole.notify_one();
            }
        }
    }

    /// The sections as they ended (files flushed and closed).
    pub fn take(&self) -> Vec<Section> {
        let Ok(mut r) = self.reader.lock() else {
            return Vec::new();
        };
        r.outs
            .iter_mut()
            .map(|o| {
                if let Some(mut f) = o.file.take() {
                    let _ = f.flush();
                }
                std::mem::take(&mut o.section)
            })
            .collect()
    }
}

impl Reader {
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.broken {
            let Some((kind, section, left)) = self.frame else {
                let need = 6 - self.head.len();
                let take = need.min(bytes.len());
                self.head.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.head.len() == 6 {
                    let len = u32::from_be_bytes([
                        self.head[2],
                        self.head[3],
                        self.head[4],
                        self.head[5],
                    ]);
                    let (kind, section) = (self.head[0], self.head[1]);
                    self.head.clear();
                    let end_ok = (4..=MAX_END).contains(&(len as usize));
                    let ok = match usize::from(section) {
                        s if s < self.outs.len() => {
                            !self.outs[s].section.ended()
                                && match kind {
                                    b'D' => true,
                                    b'E' => end_ok,
                                    _ => false,
                                }
                        }
                        // The exit code: one end frame, after every section's.
                        s if s == self.outs.len() => {
                            self.wants_exit
                                && self.exit.is_none()
                                && kind == b'E'
                                && end_ok
                                && self.outs.iter().all(|o| o.section.ended())
                        }
                        _ => false,
                    };
                    if !ok {
                        self.broken = true;
                        return;
                    }
                    self.frame = Some((kind, section, len as usize));
                    if len == 0 {
                        self.frame = None;
                    }
                }
                continue;
            };
            let take = left.min(bytes.len());
            let (chunk, rest) = bytes.split_at(take);
            bytes = rest;
            match kind {
                b'D' => self.data(usize::from(section), chunk),
                _ => self.end.extend_from_slice(chunk),
            }
            let left = left - take;
            self.frame = (left > 0).then_some((kind, section, left));
            if left == 0 && kind == b'E' {
                let end = std::mem::take(&mut self.end);
                let code = i32::from_be_bytes([end[0], end[1], end[2], end[3]]);
                if usize::from(section) == self.outs.len() {
                    self.exit = Some(i64::from(code));
                    continue;
                }
                let out = &mut self.outs[usize::from(section)];
                out.section.code = Some(i64::from(code));
                out.section.stderr = String::from_utf8_lossy(&end[4..]).into_owned();
                if out.file.is_none() && !out.section.over_cap {
                    // An empty section: its file exists, empty.
                    if let Err(e) = open(out) {
                        tracing::warn!(error = %e, "cannot write the agent's export");
                        out.section.code = None;
                    }
                }
            }
        }
    }

    fn data(&mut self, section: usize, chunk: &[u8]) {
        let out = &mut self.outs[section];
        if out.section.over_cap || chunk.is_empty() {
            return;
        }
        if out.file.is_none() {
            if let Err(e) = open(out) {
                tracing::warn!(error = %e, "cannot write the agent's export");
                self.broken = true;
                return;
            }
        }
        let room = out.cap.saturating_sub(out.section.bytes) as usize;
        let take = chunk.len().min(room);
        let written = out
            .file
            .as_mut()
            .map(|f| f.write_all(&chunk[..take]))
            .unwrap_or(Ok(()));
        if written.is_err() {
            self.broken = true;
            return;
        }
        out.section.bytes += take as u64;
        out.section.over_cap = take < chunk.len();
    }
}

fn open(out: &mut Out) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&out.path);
    out.file = Some(agentq_shared::fsutil::create_nofollow(&out.path)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, section: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind, section];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn end(code: i32, err: &str) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(err.as_bytes());
        p
    }

    #[test]
    fn frames_split_anywhere_fill_their_sections_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let sink = AfterSink::new(vec![(a.clone(), 1000), (b.clone(), 4)]);
        let mut stream = frame(b'D', 0, b"bundle ");
        stream.extend(frame(b'D', 0, b"bytes"));
        stream.extend(frame(b'E', 0, &end(0, "")));
        stream.extend(frame(b'D', 1, b"patch over"));
        stream.extend(frame(b'E', 1, &end(5, "oops")));
        for byte in stream.chunks(3) {
            sink.push(byte);
        }
        let s = sink.take();
        assert_eq!(std::fs::read(&a).unwrap(), b"bundle bytes");
        assert_eq!((s[0].code, s[0].bytes, s[0].over_cap), (Some(0), 12, false));
        assert_eq!(std::fs::read(&b).unwrap(), b"patc");
        assert_eq!((s[1].code, s[1].over_cap), (Some(5), true));
        assert_eq!(s[1].stderr, "oops");
    }

    /// A stream that breaks the format (an unknown section, a second end,
    /// a huge end) leaves what has not ended unended: the caller falls back.
    #[test]
    fn a_malformed_stream_ends_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let sink = AfterSink::new(vec![
            (dir.path().join("a"), 100),
            (dir.path().join("b"), 100),
        ]);
        let mut stream = frame(b'E', 0, &end(4, ""));
        stream.extend(frame(b'E', 0, &end(0, "again")));
        stream.extend(frame(b'E', 1, &end(0, "")));
        sink.push(&stream);
        let s = sink.take();
        assert_eq!(s[0].code, Some(4));
        assert_eq!(s[1].code, None, "after a second end, nothing counts");
        let sink = AfterSink::new(vec![(dir.path().join("c"), 100)]);
        sink.push(&frame(b'D', 7, b"x"));
        sink.push(&frame(b'E', 0, &end(0, "")));
        assert_eq!(sink.take()[0].code, None);
    }

    /// Resolves `sink.whole()` if it is ready now.
    fn whole_now(sink: &AfterSink) -> Option<i64> {
        use futures::FutureExt;
        sink.whole().now_or_never()
    }

    #[test]
    fn the_run_ends_with_its_sections_and_the_agents_exit_code_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let files = || vec![(dir.path().join("a"), 100), (dir.path().join("b"), 100)];
        // QA's: with the last section's end, exit code 0.
        let qa = AfterSink::new(files()).ending(Ends::WithSections);
        qa.push(&frame(b'E', 0, &end(0, "")));
        assert_eq!(whole_now(&qa), None, "one section left");
        qa.push(&frame(b'E', 1, &end(3, "")));
        assert_eq!(whole_now(&qa), Some(0));
        // The agent's: the sections, then its exit code as one end more.
        let agent = AfterSink::new(files()).ending(Ends::WithExit);
        agent.push(&frame(b'E', 0, &end(0, "")));
        agent.push(&frame(b'E', 1, &end(0, "")));
        assert_eq!(whole_now(&agent), None, "no exit code yet");
        agent.push(&frame(b'E', 2, &end(7, "")));
        assert_eq!(whole_now(&agent), Some(7));
        assert_eq!(agent.take()[1].code, Some(0));
        // Without the sections' ends first, an exit code is a broken stream;
        // so is one where no exit code is wanted.
        let early = AfterSink::new(files()).ending(Ends::WithExit);
        early.push(&frame(b'E', 0, &end(0, "")));
        early.push(&frame(b'E', 2, &end(7, "")));
        early.push(&frame(b'E', 1, &end(0, "")));
        assert_eq!(whole_now(&early), None);
        assert_eq!(early.take()[1].code, None);
        let unwanted = AfterSink::new(files());
        unwanted.push(&frame(b'E', 0, &end(0, "")));
        unwanted.push(&frame(b'E', 1, &end(0, "")));
        unwanted.push(&frame(b'E', 2, &end(7, "")));
        assert_eq!(whole_now(&unwanted), None, "never ends the run");
        // Data for the exit's section breaks the stream too.
        let data = AfterSink::new(files()).ending(Ends::WithExit);
        data.push(&frame(b'E', 0, &end(0, "")));
        data.push(&frame(b'E', 1, &end(0, "")));
        data.push(&frame(b'D', 2, b"x"));
        data.push(&frame(b'E', 2, &end(7, "")));
        assert_eq!(whole_now(&data), None);
    }
}
