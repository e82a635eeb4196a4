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

/// Most bytes of a prompt given to an agent as one command-line argument
/// (gemini, local): Linux refuses an argument over 128 KiB (`MAX_ARG_STRLEN`),
/// so a longer prompt is cut at a section boundary (see [`for_argument`]).
pub const ARGUMENT_PROMPT_MAX_BYTES: usize = 100 * 1024;

pub use crate::container_paths::{ANSWER_PATH, PROMPT_PATH};

/// A prompt cut to fit one argument: what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptCut {
    /// Bytes of the whole prompt.
    pub full_bytes: usize,
    /// Bytes given in the argument.
    pub kept_bytes: usize,
    /// The sections left out (or cut short), by title.
    pub sections: Vec<String>,
}

impl PromptCut {
    /// One line for the job record and the agent: what was cut and where the
    /// whole prompt is.
    pub fn describe(&self) -> String {
        format!(
            "the prompt is {} KB, over the {} KB an agent can take in one argument: \
             cut to {} KB, leaving out {}; the whole prompt is in {PROMPT_PATH}",
            self.full_bytes / 1024,
            ARGUMENT_PROMPT_MAX_BYTES / 1024,
            self.kept_bytes / 1024,
            self.sections.join(", ")
        )
    }
}

/// `prompt` as one command-line argument: as it is when it is at most
/// [`ARGUMENT_PROMPT_MAX_BYTES`]; otherwise whole sections (`## TITLE`) in
/// their order while they fit, the others left out, and a `PROMPT CUT` section
/// where the first one was left out, naming them and [`PROMPT_PATH`]. A first
/// section too long by itself is cut short.
pub fn for_argument(prompt: &str) -> (String, Option<PromptCut>) {
    if prompt.len() <= ARGUMENT_PROMPT_MAX_BYTES {
        return (prompt.to_string(), None);
    }
    // Sections start at the beginning of a line with `## `.
    let mut starts: Vec<usize> = prompt.match_indices("\n## ").map(|(i, _)| i + 1).collect();
    starts.insert(0, 0);
    let sections: Vec<&str> = starts
        .iter()
        .enumerate()
        .map(|(n, &s)| &prompt[s..starts.get(n + 1).copied().unwrap_or(prompt.len())])
        .collect();
    let title = |s: &str| {
        s.strip_prefix("## ")
            .and_then(|t| t.lines().next())
            .unwrap_or("(untitled)")
            .chars()
            .take(80)
            .collect::<String>()
    };
    // Room for the marker: its text is at most a few hundred bytes plus the titles.
    let left_out: usize = sections.iter().map(|s| title(s).len() + 2).sum();
    let budget = ARGUMENT_PROMPT_MAX_BYTES.saturating_sub(512 + left_out);
    let mut kept: Vec<Result<String, String>> = Vec::new();
    let mut used = 0;
    for (n, s) in sections.iter().enumerate() {
        if used + s.len() <= budget {
            used += s.len();
            kept.push(Ok(s.to_string()));
        } else if n == 0 {
            let short = crate::text::cut(s, budget / 2);
            used += short.len();
            kept.push(Ok(format!("{}\n\n", short.trim_end())));
            kept.push(Err(format!("the rest of {}", title(s))));
        } else {
            kept.push(Err(title(s)));
        }
    }
    let cut_titles: Vec<String> = kept.iter().filter_map(|k| k.clone().err()).collect();
    let mut cut = PromptCut {
        full_bytes: prompt.len(),
        kept_bytes: 0,
        sections: cut_titles,
    };
    let mut out = String::with_capacity(used + 1024);
    let mut marked = false;
    for k in &kept {
        match k {
            Ok(s) => out.push_str(s),
            Err(_) if !marked => {
                marked = true;
                out.push_str("## PROMPT CUT\n\n");
                out.push_str(&format!(
                    "This prompt is {} KB, too long for the command line: left out here: {}. \
                     Read the whole prompt in {PROMPT_PATH}.\n\n",
                    cut.full_bytes / 1024,
                    cut.sections.join(", ")
                ));
            }
            Err(_) => {}
        }
    }
    cut.kept_bytes = out.len();
    (out, Some(cut))
}

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

    #[test]
    fn a_long_prompt_is_cut_for_an_argument_at_section_boundaries() {
        let short = "## TASK\n\nx\n\n";
        assert_eq!(for_argument(short), (short.to_string(), None));
        let big = "p".repeat(300 * 1024);
        let prompt = format!(
            "## TASK\n\nDo it @agentq-test print ok\n\n## PLAN\n\n{big}\n\n## CONSTRAINTS\n\n- stay\n\n"
        );
        let (arg, cut) = for_argument(&prompt);
        let cut = cut.expect("cut");
        assert!(arg.len() <= ARGUMENT_PROMPT_MAX_BYTES, "{}", arg.len());
        assert_eq!(cut.sections, ["PLAN"]);
        assert_eq!(cut.kept_bytes, arg.len());
        assert!(arg.starts_with("## TASK\n\nDo it @agentq-test print ok"));
        assert!(arg.contains("## PROMPT CUT"), "{arg}");
        assert!(arg.contains(PROMPT_PATH));
        assert!(arg.ends_with("## CONSTRAINTS\n\n- stay\n\n"), "{arg}");
        assert!(cut.describe().contains("the prompt is 300 KB"));
        // One section alone too long: cut short, the rest named.
        let (arg, cut) = for_argument(&format!("## TASK\n\n{big}"));
        assert!(arg.len() <= ARGUMENT_PROMPT_MAX_BYTES);
        assert_eq!(cut.unwrap().sections, ["the rest of TASK"]);
    }
}
