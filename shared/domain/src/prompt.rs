//! The prompt handed to the agent, in sections: TASK, REPO, PERSONA, WORKFLOW,
//! ISSUE, RECENT CHANGES, PLAN, CONSTRAINTS (and RESUME for a resumed job).

use crate::{
    input::DispatchInput,
    language::Language,
    text::{cut, cut_lines},
};

/// Most bytes of an issue's body in the prompt (the rest is cut, with a
/// marker): issue bodies are anyone's text, of any size.
pub const ISSUE_BODY_MAX_BYTES: usize = 64 * 1024;
/// Most bytes of an issue's title in the prompt.
pub const ISSUE_TITLE_MAX_BYTES: usize = 1024;
/// Most bytes of each line (a commit subject) of the recent changes: an
/// agent writes those subjects.
pub const COMMIT_SUBJECT_MAX_BYTES: usize = 200;
/// Most bytes of the whole recent-changes section.
pub const RECENT_CHANGES_MAX_BYTES: usize = 8 * 1024;

/// The resume prompt's opening (upstream's resume wording).
pub const RESUME_PROMPT: &str = "Resume from where you left off. You were stopped to ask a question; the answer is in /agentq/ANSWER.md (read-only, outside the repository) and below. Read it, then continue the task.";

/// Everything the prompt is made of, gathered by the prep stage.
#[derive(Debug, Clone, Default)]
pub struct PromptParts {
    /// The agent's branch.
    pub branch: String,
    /// Detected language, if any.
    pub language: Option<Language>,
    /// The template set's instructions (from `template`).
    pub template_text: String,
    /// Persona text, if the job names one.
    pub persona: Option<String>,
    /// Issue title and body from the forge, if the job has an issue.
    pub issue: Option<(String, String)>,
    /// `git log --oneline -20`.
    pub recent_changes: String,
    /// Rendered plan, if the job names one.
    pub plan: Option<String>,
    /// The answer of a resumed job.
    pub answer: Option<String>,
    /// The workspace already existed.
    pub resumed: bool,
}

fn section(out: &mut String, title: &str, body: &str) {
    out.push_str("## ");
    out.push_str(title);
    out.push_str("\n\n");
    out.push_str(body.trim_end());
    out.push_str("\n\n");
}

/// Builds the prompt.
pub fn build_prompt(input: &DispatchInput, parts: &PromptParts) -> String {
    let mut out = String::new();
    if let Some(answer) = &parts.answer {
        section(
            &mut out,
            "RESUME",
            &format!("{RESUME_PROMPT}\n\nANSWER:\n{}", answer.trim()),
        );
    }
    section(
        &mut out,
        "TASK",
        &format!("{}\n\n{}", input.task.trim(), parts.template_text.trim()),
    );

    let mut repo = format!(
        "Repository: {}/{}\nBranch: {}\n",
        input.org, input.repo, parts.branch
    );
    match parts.language {
        Some(l) => repo.push_str(&format!(
            "Language: {}\nBuild: `{}`\nTest: `{}`\n",
            l.name(),
            l.build_command(),
            l.test_command()
        )),
        None => repo.push_str("Language: not detected\n"),
    }
    if input.pr > 0 {
        repo.push_str(&format!("Pull request: #{}\n", input.pr));
    }
    if parts.resumed && parts.answer.is_none() {
        repo.push_str("This workspace has earlier work in it: build on it.\n");
    }
    section(&mut out, "REPO", &repo);

    if let Some(p) = &parts.persona {
        section(&mut out, "PERSONA", p);
    }
    section(&mut out, "WORKFLOW", &workflow(parts.language));
    if let Some((title, body)) = &parts.issue {
        section(
            &mut out,
            "ISSUE",
            &format!(
                "# {}\n\n{}",
                cut(title.trim(), ISSUE_TITLE_MAX_BYTES),
                cut(body.trim(), ISSUE_BODY_MAX_BYTES)
            ),
        );
    }
    if !parts.recent_changes.trim().is_empty() {
        section(
            &mut out,
            "RECENT CHANGES",
            &cut(
                &cut_lines(&parts.recent_changes, COMMIT_SUBJECT_MAX_BYTES),
                RECENT_CHANGES_MAX_BYTES,
            ),
        );
    }
    if let Some(plan) = &parts.plan {
        section(&mut out, "PLAN", plan);
    }
    section(
        &mut out,
        "CONSTRAINTS",
        "- Work only inside this repository; do not use absolute paths or leave it.\n\
         - Commit your changes on the current branch with clear messages.\n\
         - Do not push and do not open pull requests: agentq does that after checks.\n\
         - If you cannot go on without an answer, write the question to BLOCKED.md and stop.",
    );
    out
}

fn workflow(lang: Option<Language>) -> String {
    let check = match lang {
        Some(l) => format!(
            "Run `{}` and `{}` until both pass.",
            l.build_command(),
            l.test_command()
        ),
        None => "Run the project's own checks, if it has any.".to_string(),
    };
    format!(
        "1. Read the code the task touches, and its tests.\n\
         2. Make the change, with tests.\n\
         3. {check}\n\
         4. Commit."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> DispatchInput {
        DispatchInput {
            repo: "go-io".into(),
            org: "core".into(),
            task: "Fix it".into(),
            issue: 7,
            ..Default::default()
        }
    }

    #[test]
    fn sections_appear_in_order() {
        let parts = PromptParts {
            branch: "agent/fix-it".into(),
            language: Some(Language::Go),
            template_text: "coding text".into(),
            persona: Some("persona text".into()),
            issue: Some(("Title".into(), "Body".into())),
            recent_changes: "abc123 initial".into(),
            plan: Some("Plan".into()),
            ..Default::default()
        };
        let p = build_prompt(&input(), &parts);
        let order = [
            "## TASK",
            "## REPO",
            "## PERSONA",
            "## WORKFLOW",
            "## ISSUE",
            "## RECENT CHANGES",
            "## PLAN",
            "## CONSTRAINTS",
        ];
        let pos: Vec<usize> = order
            .iter()
            .map(|s| p.find(s).unwrap_or_else(|| panic!("{s} missing in {p}")))
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{p}");
        assert!(p.contains("# Title\n\nBody"));
        assert!(p.contains("go test ./..."));
        assert!(!p.contains("## RESUME"));
    }

    #[test]
    fn resume_comes_first() {
        let parts = PromptParts {
            answer: Some("Use Postgres".into()),
            ..Default::default()
        };
        let p = build_prompt(&input(), &parts);
        assert!(
            p.starts_with("## RESUME\n\nResume from where you left off."),
            "{p}"
        );
        assert!(p.contains("Use Postgres"));
    }

    #[test]
    fn issue_bodies_and_commit_subjects_are_cut_with_a_marker() {
        let subjects: String = (0..100)
            .map(|n| format!("{n:07x} {}\n", "s".repeat(130 * 1024)))
            .collect();
        let parts = PromptParts {
            issue: Some(("T".repeat(10_000), "body ".repeat(1024 * 1024 / 5))),
            recent_changes: subjects,
            ..Default::default()
        };
        let p = build_prompt(&input(), &parts);
        assert!(
            p.len() < ISSUE_BODY_MAX_BYTES + RECENT_CHANGES_MAX_BYTES + 8 * 1024,
            "{} bytes",
            p.len()
        );
        let issue = &p[p.find("## ISSUE").unwrap()..p.find("## RECENT CHANGES").unwrap()];
        assert!(issue.contains("[cut "), "no marker in the issue");
        let recent = &p[p.find("## RECENT CHANGES").unwrap()..p.find("## CONSTRAINTS").unwrap()];
        assert!(recent.len() < RECENT_CHANGES_MAX_BYTES + 100);
        assert!(recent
            .lines()
            .all(|l| l.len() < COMMIT_SUBJECT_MAX_BYTES + 40));
        assert!(recent.contains("0000000 sss") && recent.contains("[cut "));
    }
}
