//! Moving a job: [`Move`], the store's form of a run's [`Transition`], applied
//! atomically by the `move` script ([`JobStore::apply`]), and the operator's
//! moves built on it (`transition`, `note`, `rerun`).

use std::time::Duration;

use redis::AsyncCommands;

use crate::{
    record::RERUN_CLEARED,
    status::JobState,
    store::{lua, now_ms, now_rfc3339, script_args, JobStore, ParkIn, StoreError},
    transition::{Next, Transition},
};

/// The `move` script (`lua/move.lua`, its arguments in
/// [`script_args::MoveArgs`]): moves a job to a new state, atomically: the
/// hash, the per-state sorted sets, an event, a history entry, and (when
/// asked) the next delivery and the end of the current run's lease. Refused
/// when the record's `seq` is not the expected one, or when a fencing token is
/// given and the record's `owner` is another: a run that lost its job to a
/// takeover can no longer write.
///
/// A run's end (release, or a final state) gives the job's slot back unless
/// told to keep it; a final state takes the job out of any line it is parked
/// in; `park` parks it (see [`crate::store::park`]) instead of pushing a delivery.
static MOVE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| lua::script("move"));

/// A change of a job's record, applied atomically by [`JobStore::apply`].
#[derive(Debug, Clone)]
pub struct Move<'a> {
    /// The new state.
    pub state: JobState,
    /// Only if the record's `seq` is still this.
    pub expect_seq: Option<u64>,
    /// Only if the record's `owner` is this fencing token (a run's writes).
    pub token: Option<&'a str>,
    /// Fields to set.
    pub fields: Vec<(&'a str, String)>,
    /// Push the next delivery (new `seq`) due after this delay; `front` puts it
    /// first in line.
    pub push: Option<(Duration, bool)>,
    /// End the run: clear `owner` and drop the run lease. Implied by a final state.
    pub release: bool,
    /// Count a new attempt (`attempt` and `tries` + 1).
    pub bump_attempt: bool,
    /// No event or history entry when the state and reason stay the same.
    pub quiet: bool,
    /// Park the job (no delivery): in its pool's lane, or in a workspace's line.
    pub park: Option<ParkIn>,
    /// Keep the job's granted slot although the run ends (left to another host).
    pub keep_slot: bool,
    /// Give the job a new place at the back of its line.
    pub reorder: bool,
}

impl From<Transition> for Move<'_> {
    /// The store's form of a run's typed transition (to be fenced by its token).
    fn from(t: Transition) -> Self {
        let mut m = Move::to(t.state).fields(&t.fields);
        m = match t.next {
            Next::Continue => m,
            Next::Park(at) => m.park(at),
            Next::Deliver { delay, front } => m.deliver(delay, front),
            Next::End => {
                m.release = true;
                m
            }
        };
        m.bump_attempt = t.bump_attempt;
        m.quiet = t.quiet;
        m.keep_slot = t.keep_slot;
        m
    }
}

impl<'a> Move<'a> {
    /// A move to `state` with nothing else.
    pub fn to(state: JobState) -> Self {
        Self {
            state,
            expect_seq: None,
            token: None,
            fields: Vec::new(),
            push: None,
            release: false,
            bump_attempt: false,
            quiet: false,
            park: None,
            keep_slot: false,
            reorder: false,
        }
    }

    /// Parks the job instead of pushing a delivery; ends the run.
    pub fn park(mut self, at: ParkIn) -> Self {
        self.park = Some(at);
        self.release = true;
        self
    }

    /// Only as the run holding `token`.
    pub fn fenced(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    /// Only while the record's seq is `seq`.
    pub fn seq(mut self, seq: u64) -> Self {
        self.expect_seq = Some(seq);
        self
    }

    /// With these fields.
    pub fn fields(mut self, fields: &[(&'a str, String)]) -> Self {
        self.fields.extend(fields.iter().cloned());
        self
    }

    /// And a new delivery after `delay` (first in line when `front`); ends the run.
    pub fn deliver(mut self, delay: Duration, front: bool) -> Self {
        self.push = Some((delay, front));
        self.release = true;
        self
    }
}

/// What [`JobStore::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Applied; the record's seq, attempt and tries after it.
    Done {
        /// `seq` after the move.
        seq: u64,
        /// `attempt` after the move.
        attempt: u32,
        /// `tries` after the move.
        tries: u32,
    },
    /// Refused: the seq moved on or another run owns the job.
    Refused,
    /// There is no such job.
    NoRecord,
}

impl Moved {
    /// Whether the move was applied.
    pub fn done(&self) -> bool {
        matches!(self, Moved::Done { .. })
    }
}

/// One line of `events.jsonl`: the job, its new state and when.
fn append_event_line(path: &std::path::Path, id: &str, state: JobState) {
    use std::io::Write;
    let line = serde_json::json!({"job": id, "state": state, "at": now_rfc3339()}).to_string();
    let file = crate::fsutil::append_nofollow(path);
    if let Err(e) = file.and_then(|mut f| writeln!(f, "{line}")) {
        tracing::warn!(path = %path.display(), error = %e, "cannot append to events.jsonl");
    }
}

impl JobStore {
    /// Applies a [`Move`] to job `id` in one Lua call.
    ///
    /// # Errors
    /// Redis errors (then nothing was changed, or everything was: a retry of a
    /// fenced or seq-checked move is refused if the first one went through).
    pub async fn apply(&self, id: &str, m: &Move<'_>) -> Result<Moved, StoreError> {
        let now = now_ms();
        let push = m.push.map(|(delay, front)| script_args::Push {
            task: crate::delivery::new_task_id(),
            run_at_ms: now + delay.as_millis() as i64,
            front,
        });
        let args = script_args::MoveArgs {
            keys: &self.keys,
            id,
            now_ms: now,
            now: now_rfc3339(),
            push,
            m,
        };
        let inv = args.invocation(&MOVE_SCRIPT);
        let mut conn = self.conn.clone();
        let (status, seq, attempt, tries): (i64, u64, u32, u32) =
            inv.invoke_async(&mut conn).await?;
        Ok(match status {
            1 => {
                if let Some(path) = &self.event_log {
                    append_event_line(path, id, m.state);
                }
                Moved::Done {
                    seq,
                    attempt,
                    tries,
                }
            }
            0 => Moved::Refused,
            -1 => Moved::NoRecord,
            bad => {
                // Nothing was written: the record does not parse.
                let field = match bad {
                    -2 => "seq",
                    -3 => "attempt",
                    _ => "tries",
                };
                return Err(StoreError::Corrupt(
                    id.to_string(),
                    format!("{field}: is not a number"),
                ));
            }
        })
    }

    /// Moves a job to `state`, setting `fields` too, as an operator (no fencing
    /// token). With `expect_seq`, only if the record's seq still matches.
    /// Returns whether the move happened.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn transition(
        &self,
        id: &str,
        state: JobState,
        expect_seq: Option<u64>,
        fields: &[(&str, String)],
    ) -> Result<bool, StoreError> {
        let mut m = Move::to(state).fields(fields);
        m.expect_seq = expect_seq;
        Ok(self.apply(id, &m).await?.done())
    }

    /// Writes a [`Note`](crate::transition::Note) (fields, no state change).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn note(&self, id: &str, note: &crate::transition::Note) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn.hset_multiple(self.keys.job(id), &note.fields).await?;
        Ok(())
    }

    /// Runs a finished job again as a new delivery of the same record (for retry
    /// and resume): clears the outcome, resets `tries`, lifts any cancel request,
    /// applies `fields`, and parks it in its pool's lane (`to_back`: behind every
    /// job waiting now; else at its first place in line). The attempt counter keeps counting.
    /// Only while the record's seq is `seq` (the one the caller checked); returns
    /// whether it happened.
    ///
    /// # Errors
    /// Redis or queue errors.
    pub async fn rerun(
        &self,
        id: &str,
        seq: u64,
        fields: &[(&str, String)],
        to_back: bool,
    ) -> Result<bool, StoreError> {
        // A new seq with the change: a second operator who read the same
        // finished record (resume or retry at the same time) is refused.
        let mut all: Vec<(&str, String)> =
            vec![("tries", "0".into()), ("seq", (seq + 1).to_string())];
        all.extend(RERUN_CLEARED.iter().map(|f| (*f, String::new())));
        all.extend(fields.iter().cloned());
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.keys.cancel(id)).await?;
        let mut m = Move::to(JobState::Queued)
            .seq(seq)
            .fields(&all)
            .park(ParkIn::Lane);
        m.reorder = to_back;
        Ok(self.apply(id, &m).await?.done())
    }
}
