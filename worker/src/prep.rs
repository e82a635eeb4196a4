//! Stage 1, prep: the workspace, the clone, the agent branch and the prompt.

use std::path::Path;

use agentq_shared::{
    config::Config,
    input::DispatchInput,
    language::Language,
    prompt::{build_prompt, PromptParts},
    record::JobRecord,
    templates::{TemplateError, Templates},
    workspace::{agent_branch, Workspace},
};

use crate::git::{git, has_branch};

/// What prep leaves for the run stage.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The workspace.
    pub workspace: Workspace,
    /// The agent's branch, checked out.
    pub branch: String,
    /// The prompt, also in `.meta/prompt.md`.
    pub prompt: String,
    /// The clone already existed (an earlier run's work is in it).
    pub resumed: bool,
}

/// Where `{org}/{repo}` is cloned from.
pub fn clone_url(cfg: &Config, input: &DispatchInput) -> String {
    format!(
        "{}/{}/{}.git",
        cfg.git_base.trim_end_matches('/'),
        input.org,
        input.repo
    )
}

/// Why prep failed.
#[derive(Debug)]
pub enum PrepError {
    /// The job itself is wrong (a missing persona or plan): retrying cannot help.
    Job(String),
    /// File system or git trouble: worth another attempt.
    Infra(anyhow::Error),
}

impl From<TemplateError> for PrepError {
    fn from(e: TemplateError) -> Self {
        PrepError::Job(e.to_string())
    }
}

/// Makes (or reuses) the workspace of the job, then writes the prompt from the
/// templates, the repository and `issue` (title, body) if the forge gave one.
///
/// # Errors
/// [`PrepError::Job`] for template problems, [`PrepError::Infra`] for the rest.
pub async fn prepare(
    cfg: &Config,
    rec: &JobRecord,
    issue: Option<(String, String)>,
) -> Result<Prepared, PrepError> {
    let input = &rec.input;
    let templates = Templates::new(cfg.templates_dir.clone());
    // Template problems are the job's fault: find them before cloning anything.
    let template_text = templates.template_set(&input.template)?;
    let persona = (!input.persona.is_empty())
        .then(|| templates.persona(&input.persona))
        .transpose()?;
    let plan = (!input.plan_template.is_empty())
        .then(|| templates.plan(&input.plan_template, &input.variables))
        .transpose()?;
    let (workspace, branch, resumed) = checkout(cfg, input).await.map_err(PrepError::Infra)?;
    let repo = workspace.repo_dir();
    let infra = |e: std::io::Error| PrepError::Infra(e.into());
    if !rec.answer.is_empty() {
        std::fs::write(
            repo.join("ANSWER.md"),
            format!("{}\n", rec.answer.trim_end()),
        )
        .map_err(infra)?;
    }
    let recent_changes = git(&repo, &["log", "--oneline", "-20"])
        .await
        .unwrap_or_default();
    let parts = PromptParts {
        branch: branch.clone(),
        language: Language::detect(&repo),
        template_text,
        persona,
        issue,
        recent_changes,
        plan,
        answer: (!rec.answer.is_empty()).then(|| rec.answer.clone()),
        resumed,
    };
    let prompt = build_prompt(input, &parts);
    agentq_shared::fsutil::write_atomic(&workspace.prompt_file(), prompt.as_bytes())
        .map_err(infra)?;
    Ok(Prepared {
        workspace,
        branch,
        prompt,
        resumed,
    })
}

/// The workspace and the clone on the agent branch: (workspace, branch, resumed).
async fn checkout(
    cfg: &Config,
    input: &DispatchInput,
) -> anyhow::Result<(Workspace, String, bool)> {
    let workspace = Workspace::for_input(&cfg.workspace_root, input)?;
    let repo = workspace.repo_dir();
    std::fs::create_dir_all(workspace.meta_dir())?;

    let resumed = repo.join(".git").join("HEAD").is_file();
    if !resumed {
        if repo.exists() {
            // A clone that died half-way: start it again.
            std::fs::remove_dir_all(&repo)?;
        }
        clone(cfg, input, &workspace.dir, &repo).await?;
    }

    let branch = agent_branch(input);
    if has_branch(&repo, &branch).await {
        git(&repo, &["checkout", "--quiet", &branch]).await?;
    } else {
        git(&repo, &["checkout", "--quiet", "-b", &branch]).await?;
    }

    let blocked = repo.join("BLOCKED.md");
    if blocked.exists() {
        std::fs::remove_file(&blocked)?;
    }
    Ok((workspace, branch, resumed))
}

async fn clone(cfg: &Config, input: &DispatchInput, ws: &Path, repo: &Path) -> anyhow::Result<()> {
    let url = clone_url(cfg, input);
    let mut args = vec!["clone", "--quiet", "--no-tags"];
    let named = if !input.branch.is_empty() {
        Some(input.branch.as_str())
    } else if !input.tag.is_empty() {
        Some(input.tag.as_str())
    } else {
        None
    };
    if let Some(r) = named {
        args.extend(["--branch", r]);
    }
    args.extend(["--", url.as_str(), "repo"]);
    git(ws, &args).await?;
    if input.pr > 0 {
        let refspec = format!("pull/{}/head:pr-{}", input.pr, input.pr);
        git(repo, &["fetch", "--quiet", "origin", &refspec]).await?;
        git(repo, &["checkout", "--quiet", &format!("pr-{}", input.pr)]).await?;
    }
    Ok(())
}
