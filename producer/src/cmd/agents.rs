//! `agentq agents`: the agent table as the workers run it.

use std::{collections::BTreeMap, time::Duration};

use agentq_shared::{agent::Pool, config::Config};
use bollard::Docker;
use serde::Serialize;

use crate::{output, Failure};

const AFTER_HELP: &str = "\
Columns: the pool (`agentq enqueue --agent POOL[:MODEL]`), built-in or configured
([agents.NAME] with a `command`), the image, whether this host's Docker has it
(yes, no, or unknown when Docker does not answer), how the prompt reaches the
command (stdin, file: {prompt_file}, argument: {prompt}, cut over 100 KiB, or
unused; the whole prompt is in /agentq/prompt.md either way), the default model,
the command (placeholders unexpanded), the API keys forwarded by name, the fixed
env values (not secret: shown here), the home dirs mounted read-only from
agent_home, and the limit patterns. Reads the same agentq.toml as the workers
(--config, AGENTQ_CONFIG or ./agentq.toml): run it on a worker's host to see
what that worker runs.";

/// List the agent pools as the workers run them: each pool's image (and
/// whether this host's Docker has it), command, prompt delivery, model,
/// environment and home dirs.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Print one JSON array, one object per pool.
    #[arg(long)]
    pub json: bool,
}

/// Whether this host's Docker has an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Present {
    /// The engine has it.
    Yes,
    /// The engine answered that it has not.
    No,
    /// The engine did not answer.
    Unknown,
}

impl Present {
    fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "yes",
            Self::No => "no",
            Self::Unknown => "unknown",
        }
    }
}

/// One pool as shown.
#[derive(Debug, Serialize)]
pub struct Row {
    pool: String,
    kind: &'static str,
    image: String,
    image_present: Present,
    prompt: &'static str,
    default_model: Option<String>,
    command: Option<Vec<String>>,
    env_keys: Vec<String>,
    env: BTreeMap<String, String>,
    home_dirs: Vec<String>,
    writable_home: bool,
    host_gateway: bool,
    limit_patterns: Vec<String>,
}

fn row(cfg: &Config, pool: &Pool, present: Present) -> Row {
    let own = cfg.agents.get(&pool.name);
    let mut env_keys = cfg.docker.env_keys.clone();
    let mut home_dirs: Vec<String> = Vec::new();
    if pool.configured.is_none() {
        home_dirs.extend(
            agentq_shared::agent::builtin_home_dirs(&pool.name)
                .iter()
                .map(|d| d.to_string()),
        );
    }
    if let Some(a) = own {
        for k in &a.env_keys {
            if !env_keys.contains(k) {
                env_keys.push(k.clone());
            }
        }
        home_dirs.extend(a.home_dirs.iter().cloned());
    }
    let configured = pool.configured.as_deref();
    Row {
        pool: pool.name.clone(),
        kind: match (pool.builtin, configured.is_some()) {
            (true, false) => "built-in",
            (true, true) => "configured (replaces the built-in command)",
            _ => "configured",
        },
        image: cfg.image_for(&pool.name).to_string(),
        image_present: present,
        prompt: pool.prompt_via(None).as_str(),
        default_model: match configured {
            Some(c) => c.default_model.clone(),
            None if pool.name == "local" => {
                Some(agentq_shared::agent::DEFAULT_LOCAL_MODEL.to_string())
            }
            None => None,
        },
        command: configured.map(|c| c.template.raw().to_vec()),
        env_keys,
        env: own.map(|a| a.env.clone()).unwrap_or_default(),
        home_dirs,
        writable_home: own.and_then(|a| a.writable_home).unwrap_or(true),
        host_gateway: cfg.host_gateway_for(&pool.name),
        limit_patterns: pool.limit_patterns.clone(),
    }
}

/// Asks this host's Docker for each image, never failing: `unknown` when it
/// does not answer (within a few seconds).
async fn images_present(images: &[String]) -> Vec<Present> {
    let unknown = || vec![Present::Unknown; images.len()];
    let Ok(docker) = Docker::connect_with_local_defaults() else {
        return unknown();
    };
    let budget = Duration::from_secs(5);
    if !matches!(tokio::time::timeout(budget, docker.ping()).await, Ok(Ok(_))) {
        return unknown();
    }
    let mut out = Vec::with_capacity(images.len());
    for image in images {
        let answer = tokio::time::timeout(budget, docker.inspect_image(image)).await;
        out.push(match answer {
            Ok(Ok(_)) => Present::Yes,
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => Present::No,
            _ => Present::Unknown,
        });
    }
    out
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let pools = cfg.agent_table().pools();
    let images: Vec<String> = pools
        .iter()
        .map(|p| cfg.image_for(&p.name).to_string())
        .collect();
    let present = images_present(&images).await;
    let rows: Vec<Row> = pools
        .iter()
        .zip(present)
        .map(|(p, present)| row(cfg, p, present))
        .collect();
    if args.json {
        output::print_json(&rows);
        return Ok(0);
    }
    for r in &rows {
        outln!("{} ({})", r.pool, r.kind);
        outln!(
            "  image:          {} (present: {})",
            r.image,
            r.image_present.as_str()
        );
        outln!("  prompt:         {}", r.prompt);
        if let Some(m) = &r.default_model {
            outln!("  default model:  {m}");
        }
        match &r.command {
            Some(c) => outln!(
                "  command:        {}",
                serde_json::to_string(c).unwrap_or_default()
            ),
            None => outln!("  command:        built-in (see README: Agents)"),
        }
        outln!("  env keys:       {}", r.env_keys.join(", "));
        if !r.env.is_empty() {
            let env: Vec<String> = r.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            outln!("  env:            {}", env.join(" "));
        }
        if !r.home_dirs.is_empty() {
            outln!("  home dirs:      {}", r.home_dirs.join(", "));
        }
        if !r.writable_home {
            outln!("  home:           read-only");
        }
        if r.host_gateway {
            outln!("  host gateway:   yes (host.docker.internal)");
        }
        if !r.limit_patterns.is_empty() {
            let pats: Vec<String> = r.limit_patterns.iter().map(|p| format!("{p:?}")).collect();
            outln!("  limit patterns: {}", pats.join(", "));
        }
    }
    Ok(0)
}
