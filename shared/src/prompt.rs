//! The prompt handed to the agent.

use crate::input::DispatchInput;

/// Facts about the prepared workspace that go into the prompt.
#[derive(Debug, Clone, Default)]
pub struct PromptContext {
    /// The agent's branch.
    pub branch: String,
    /// Whether an earlier run left the workspace (a resumed job).
    pub resumed: bool,
}

/// Builds the prompt: TASK, REPO, CONSTRAINTS.
pub fn build_prompt(input: &DispatchInput, ctx: &PromptContext) -> String {
    let mut out = String::new();
    out.push_str("## TASK\n\n");
    out.push_str(input.task.trim());
    out.push_str("\n\n## REPO\n\n");
    out.push_str(&format!(
        "Repository: {}/{}\nBranch: {}\n",
        input.org, input.repo, ctx.branch
    ));
    if input.issue > 0 {
        out.push_str(&format!("Issue: #{}\n", input.issue));
    }
    if input.pr > 0 {
        out.push_str(&format!("Pull request: #{}\n", input.pr));
    }
    if ctx.resumed {
        out.push_str("\nThis workspace has earlier work in it: resume from where it left off.\n");
    }
    out.push_str(
        "\n## CONSTRAINTS\n\n\
         - Work only inside this repository; do not use absolute paths.\n\
         - Commit your changes on the current branch with clear messages.\n\
         - Do not push; agentq pushes and opens the pull request.\n\
         - If you cannot go on without an answer, write the question to BLOCKED.md and stop.\n",
    );
    out
}
