//! What of a job's write-back is left to do, kept for doing again later.

use agentq_shared::{
    forge::{CreatePull, CreateStatus},
    record::JobRecord,
};

/// What of a job's write-back is to be done (again): the pull request, the
/// commit status and the outcome comment, each dropped once done. Stored as
/// JSON in Redis while it waits for [`crate::writeback`].
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct WriteBack {
    /// The job.
    pub job: String,
    /// Repository owner.
    pub org: String,
    /// Repository.
    pub repo: String,
    /// The job's issue (0: none).
    pub issue: u64,
    /// The run (the record's `runs`) whose write-back this is: only while the
    /// record is final with this run is it done (a later run has its own).
    #[serde(default)]
    pub runs: u32,
    /// The pull request to find or open (an empty base: the repository's
    /// default branch, looked up first).
    pub pull: Option<CreatePull>,
    /// Its URL once known.
    pub pr_url: Option<String>,
    /// The last commit status to set: (sha, status).
    pub status: Option<(String, CreateStatus)>,
    /// The outcome comment.
    pub comment: Option<CommentText>,
}

impl WriteBack {
    /// Nothing left to do.
    pub fn is_empty(&self) -> bool {
        self.pull.is_none() && self.status.is_none() && self.comment.is_none()
    }

    fn of(rec: &JobRecord) -> Self {
        Self {
            job: rec.id.clone(),
            org: rec.input.org.clone(),
            repo: rec.input.repo.clone(),
            issue: rec.input.issue,
            ..Self::default()
        }
    }

    pub(super) fn for_job(&mut self, rec: &JobRecord) -> &mut Self {
        if self.job.is_empty() {
            *self = Self::of(rec);
        }
        self
    }
}

/// The outcome comment's text around the pull request line (known only once
/// the pull request is open).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CommentText {
    /// Before the pull request line.
    pub head: String,
    /// After it.
    pub tail: String,
}

impl CommentText {
    /// The body, with the pull request's URL if any.
    pub fn body(&self, pr_url: Option<&str>) -> String {
        let pr = pr_url
            .map(|u| format!("- Pull request: {u}\n"))
            .unwrap_or_default();
        format!("{}{pr}{}", self.head, self.tail)
    }
}
