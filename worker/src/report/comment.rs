//! The outcome comment on the job's issue: one per job, edited on a re-run.

use agentq_shared::{
    forge::job_marker,
    record::JobRecord,
    text::{cut, strip_controls},
    transition::Outcome,
};

use super::{forge_for, CommentText, ForgeErrors};
use crate::{context::WorkerCtx, qa::QaResult};

/// What the outcome comment says.
#[derive(Debug)]
pub struct Comment<'a> {
    /// How the run ended.
    pub outcome: &'a Outcome,
    /// QA result.
    pub qa: Option<&'a QaResult>,
    /// Pull request URL.
    pub pr_url: Option<&'a str>,
    /// The agent's branch.
    pub branch: &'a str,
    /// The agent's final message (empty: none).
    pub summary: &'a str,
}

/// Most bytes of the agent's summary an outcome comment carries (the record
/// has all of it, up to its own cap).
pub const COMMENT_SUMMARY_MAX: usize = 4 * 1024;

/// The agent's summary as the comment shows it: cut to
/// [`COMMENT_SUMMARY_MAX`] bytes, each line quoted (`> `), so that it reads
/// as the agent's words and cannot end the comment's own lines.
fn quoted_summary(summary: &str) -> String {
    let summary = cut(summary.trim(), COMMENT_SUMMARY_MAX);
    let quoted: Vec<String> = summary
        .lines()
        .map(|l| {
            if l.is_empty() {
                ">".into()
            } else {
                format!("> {l}")
            }
        })
        .collect();
    format!(
        "\n**Summary** (the agent's last message):\n\n{}\n",
        quoted.join("\n")
    )
}

/// Posts the outcome on the issue, or edits agentq's earlier comment for this job
/// (found by a hidden marker), so a re-run never posts twice.
pub async fn comment(ctx: &WorkerCtx, rec: &JobRecord, c: &Comment<'_>, errors: &mut ForgeErrors) {
    let Some(forge) = forge_for(ctx, rec) else {
        return;
    };
    let mut body = format!(
        "**agentq** job `{}`: **{}**\n\n- Agent: `{}`\n- Branch: `{}`\n",
        rec.id,
        c.outcome.state(),
        rec.input.agent,
        c.branch
    );
    if let Some(qa) = c.qa {
        let detail = if qa.command.is_empty() {
            String::new()
        } else {
            format!(" (`{}` {})", qa.command, qa.detail)
        };
        body.push_str(&format!("- QA: {}{}\n", qa.status, detail));
    }
    let label = match c.outcome {
        Outcome::Blocked { .. } => "Question",
        _ => "Reason",
    };
    let mut tail = String::new();
    if !c.outcome.message().is_empty() {
        tail.push_str(&format!("\n**{label}:** {}\n", c.outcome.message()));
    }
    if !c.summary.trim().is_empty() {
        tail.push_str(&quoted_summary(c.summary));
    }
    // The question, errors and summary are the agent's text: no control characters on
    // the forge (they would reach whoever reads the comment in a terminal).
    let text = CommentText {
        head: strip_controls(&body),
        tail: strip_controls(&tail),
    };
    let body = text.body(c.pr_url);
    errors.redo.for_job(rec).comment = Some(text);
    let i = &rec.input;
    let fc = errors.client(forge);
    let posted = errors
        .within(
            "comment on issue",
            fc.upsert_comment(&i.org, &i.repo, i.issue, &job_marker(&rec.id), &body),
        )
        .await;
    match posted {
        Some(Ok(_)) => errors.redo.comment = None,
        Some(Err(e)) => errors.add_forge("comment on issue", e),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_in_a_comment_is_quoted_and_bounded() {
        let q = quoted_summary("Fixed the tests.\n\nAll pass.\n");
        assert_eq!(
            q,
            "\n**Summary** (the agent's last message):\n\n> Fixed the tests.\n>\n> All pass.\n"
        );
        let long = quoted_summary(&"y".repeat(20_000));
        assert!(long.len() < COMMENT_SUMMARY_MAX + 200, "{}", long.len());
        assert!(long.contains(&agentq_shared::text::cut_marker(
            20_000 - COMMENT_SUMMARY_MAX
        )));
    }
}
