//! The pools agentq reports on (`agentq stats`, the web console's overview).

use agentq_shared::config::Config;

/// The pools to report: every pool of the agent table, plus any pool the
/// config limits.
pub fn reported(cfg: &Config) -> Vec<String> {
    let mut pools = cfg.agent_table().names();
    for p in cfg
        .admission
        .limits
        .keys()
        .chain(cfg.admission.rates.keys())
    {
        if !pools.contains(p) {
            pools.push(p.clone());
        }
    }
    pools
}
