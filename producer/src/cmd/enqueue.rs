//! `agentq enqueue`: one job from flags, or NDJSON from stdin.

use std::{collections::BTreeMap, io::BufRead};

use agentq_shared::{
    config::Config,
    input::{DispatchInput, InvalidInput},
    record::JobRecord,
    store::now_rfc3339,
};
use serde_json::json;

use crate::{output, Failure};

/// Lines written to Redis per pipeline when reading NDJSON.
const BATCH: usize = 500;

/// Enqueue a dispatch job.
///
/// With `-` instead of flags, reads NDJSON from stdin: one job per line, with the
/// seed's field names (repo, org, task, agent, template, plan_template, variables,
/// persona, issue, pr, branch, tag, dry_run). Prints one result line per input line;
/// bad lines are refused with their line number and field, good lines still go in.
/// Exit code 1 if any line was refused.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  agentq enqueue --repo go-io --task 'Fix the failing tests' --issue 15\n  agentq enqueue --repo go-io --task 'Review' --agent codex:review --pr 7 --json\n  jq -c '.[]' jobs.json | agentq enqueue -"
)]
pub struct Args {
    /// `-` to read NDJSON jobs from stdin.
    #[arg(value_parser = ["-"])]
    pub stdin: Option<String>,
    /// Target repository (e.g. go-io).
    #[arg(long, required_unless_present = "stdin", allow_hyphen_values = true)]
    pub repo: Option<String>,
    /// What the agent should do.
    #[arg(long, required_unless_present = "stdin", allow_hyphen_values = true)]
    pub task: Option<String>,
    /// Forge organisation [default: core].
    #[arg(long, allow_hyphen_values = true)]
    pub org: Option<String>,
    /// codex (default), claude, gemini, coderabbit or local, with an optional :model.
    #[arg(long, allow_hyphen_values = true)]
    pub agent: Option<String>,
    /// Prompt template set: coding (default), conventions or security.
    #[arg(long, allow_hyphen_values = true)]
    pub template: Option<String>,
    /// Forge issue number (workspace task-N).
    #[arg(long)]
    pub issue: Option<u64>,
    /// Pull request number (workspace pr-N).
    #[arg(long)]
    pub pr: Option<u64>,
    /// Branch to work from (workspace named after it).
    #[arg(long, allow_hyphen_values = true)]
    pub branch: Option<String>,
    /// Tag to work from (workspace named after it).
    #[arg(long, allow_hyphen_values = true)]
    pub tag: Option<String>,
    /// Persona slug.
    #[arg(long, allow_hyphen_values = true)]
    pub persona: Option<String>,
    /// Plan template slug.
    #[arg(long, allow_hyphen_values = true)]
    pub plan_template: Option<String>,
    /// Template variable, KEY=VALUE; repeatable.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Prepare the workspace and prompt only; run no agent.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until the job is final and print its record (the prompt, for a dry
    /// run). Exit code 0 completed, 3 failed, 4 blocked, 5 cancelled, 6 timed out.
    #[arg(long, conflicts_with = "stdin")]
    pub wait: bool,
    /// Print JSON: one object per job.
    #[arg(long)]
    pub json: bool,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    if args.stdin.is_some() {
        return run_stdin(cfg, args.json).await;
    }
    let input = DispatchInput {
        repo: args.repo.unwrap_or_default(),
        org: args.org.unwrap_or_default(),
        task: args.task.unwrap_or_default(),
        agent: args.agent.unwrap_or_default(),
        template: args.template.unwrap_or_default(),
        plan_template: args.plan_template.unwrap_or_default(),
        variables: args.vars.into_iter().collect::<BTreeMap<_, _>>(),
        persona: args.persona.unwrap_or_default(),
        issue: args.issue.unwrap_or(0),
        pr: args.pr.unwrap_or(0),
        branch: args.branch.unwrap_or_default(),
        tag: args.tag.unwrap_or_default(),
        dry_run: args.dry_run,
    };
    let input = input.validated().map_err(|e| refused(&e, args.json))?;
    let store = crate::connect(cfg).await?;
    let rec = JobRecord::new(new_id(), input, cfg.max_attempts, &now_rfc3339());
    store.create(std::slice::from_ref(&rec)).await?;
    if args.wait {
        if !args.json {
            eprintln!("agentq: enqueued {}", rec.id);
        }
        return crate::cmd::wait::wait_and_print(&store, &rec.id, args.json).await;
    }
    if args.json {
        output::print_json(&json!({"id": rec.id, "status": rec.state}));
    } else {
        println!("{}", rec.id);
    }
    Ok(0)
}

fn refused(e: &InvalidInput, json: bool) -> Failure {
    if json {
        output::print_json(&json!({"error": e.to_string(), "field": e.field}));
    }
    Failure::refused(format!("refused: {e}"))
}

fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

enum LineResult {
    Queued(String),
    Refused(InvalidInput),
}

async fn run_stdin(cfg: &Config, json: bool) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let stdin = std::io::stdin();
    let (mut queued, mut refused_n) = (0usize, 0usize);
    let mut pending: Vec<(usize, LineResult)> = Vec::new();
    let mut records: Vec<JobRecord> = Vec::new();
    let now = now_rfc3339();
    for (idx, line) in stdin.lock().lines().enumerate() {
        let n = idx + 1;
        let line = line.map_err(|e| Failure::refused(format!("cannot read stdin: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        match DispatchInput::from_json(&line).and_then(DispatchInput::validated) {
            Ok(input) => {
                let rec = JobRecord::new(new_id(), input, cfg.max_attempts, &now);
                pending.push((n, LineResult::Queued(rec.id.clone())));
                records.push(rec);
            }
            Err(e) => pending.push((n, LineResult::Refused(e))),
        }
        if records.len() >= BATCH {
            store.create(&records).await?;
            records.clear();
            flush(&mut pending, json, &mut queued, &mut refused_n);
        }
    }
    store.create(&records).await?;
    flush(&mut pending, json, &mut queued, &mut refused_n);
    eprintln!("agentq: {queued} enqueued, {refused_n} refused");
    Ok(if refused_n > 0 { 1 } else { 0 })
}

fn flush(
    pending: &mut Vec<(usize, LineResult)>,
    json: bool,
    queued: &mut usize,
    refused: &mut usize,
) {
    for (n, r) in pending.drain(..) {
        match r {
            LineResult::Queued(id) => {
                *queued += 1;
                if json {
                    output::print_json(&json!({"line": n, "id": id, "status": "queued"}));
                } else {
                    println!("line {n}: queued {id}");
                }
            }
            LineResult::Refused(e) => {
                *refused += 1;
                if json {
                    output::print_json(
                        &json!({"line": n, "error": e.to_string(), "field": e.field}),
                    );
                } else {
                    println!("line {n}: refused: {e}");
                }
            }
        }
    }
}
