//! Which jobs a bulk verb (`retry`, `cancel`) acts on: the ids given, or every
//! job in a state, optionally of one agent and since a time; and `--json`.

use agentq_shared::{status::JobState, store::ops::ListFilter, store::JobStore};

use crate::{when, Failure};

/// Job ids, or `--state` with its filters.
#[derive(Debug, clap::Args)]
pub struct Selection {
    /// Job ids.
    #[arg(required_unless_present = "state")]
    pub ids: Vec<String>,
    /// Every job in this state instead of ids (cancel takes an unfinished
    /// state, retry a finished one).
    #[arg(long, conflicts_with = "ids")]
    pub state: Option<JobState>,
    /// With --state: only this agent pool or agent.
    #[arg(long, requires = "state")]
    pub agent: Option<String>,
    /// With --state: only jobs created since (RFC 3339, or an age like 2h).
    #[arg(long, requires = "state", value_parser = when::parse_since)]
    pub since: Option<i64>,
    /// Print JSON, one object per job.
    #[arg(long)]
    pub json: bool,
}

impl Selection {
    /// Whether the jobs were named by state rather than by id.
    pub fn by_state(&self) -> bool {
        self.state.is_some()
    }

    /// The ids: as given, or every job the state filter matches. `refusal`
    /// says why a state is not one the verb takes.
    pub async fn ids(
        &self,
        store: &JobStore,
        refusal: fn(JobState) -> Option<String>,
    ) -> Result<Vec<String>, Failure> {
        let Some(state) = self.state else {
            return Ok(self.ids.clone());
        };
        if let Some(why) = refusal(state) {
            return Err(Failure::refused(why));
        }
        Ok(store
            .ids_matching(&ListFilter {
                state: Some(state),
                agent: self.agent.clone(),
                since_ms: self.since,
                ..Default::default()
            })
            .await?)
    }
}
