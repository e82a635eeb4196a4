//! `agentq web`: the web console (see [`crate::web`]).

use std::net::SocketAddr;

use agentq_shared::config::Config;

use crate::Failure;

/// Serve the web console: overview, jobs, a job's page with its live output,
/// events, and the JSON API under /api/. Read-only unless --token-env names
/// a variable holding the operator token.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  agentq web\n  AGENTQ_WEB_TOKEN=$(openssl rand -hex 16) agentq web --token-env AGENTQ_WEB_TOKEN"
)]
pub struct Args {
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:9188")]
    pub addr: SocketAddr,
    /// The NAME of the environment variable holding the operator token; without
    /// it the console is read-only.
    #[arg(long, value_name = "NAME")]
    pub token_env: Option<String>,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let token = match &args.token_env {
        None => None,
        Some(name) => match std::env::var(name) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            _ => {
                return Err(Failure::refused(format!(
                "token-env: the variable {name} is missing or empty; set it to the operator token"
            )))
            }
        },
    };
    let store = crate::connect(cfg).await?;
    crate::web::serve(cfg.clone(), store, token, args.addr).await
}
