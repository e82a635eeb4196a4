//! The agents' network: made when missing, one kept when workers made several.

use std::collections::HashMap;

use bollard::Docker;

/// Makes the agents' network if it is missing (a bridge with traffic between
/// containers disabled, labelled as agentq's) and returns its id.
///
/// Docker 20.10 allows several networks of one name, and workers starting
/// together may each create one: every worker then picks the oldest of that name
/// (ties by id), removes the others it can, and uses the network by id.
///
/// # Errors
/// Docker API errors.
pub async fn ensure_network(docker: &Docker, name: &str) -> anyhow::Result<String> {
    use bollard::models::NetworkCreateRequest;
    if named_networks(docker, name).await?.is_empty() {
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([(
                "com.docker.network.bridge.enable_icc".to_string(),
                "false".to_string(),
            )])),
            labels: Some(HashMap::from([(
                "agentq.network".to_string(),
                "agents".to_string(),
            )])),
            ..Default::default()
        };
        if let Err(e) = docker.create_network(req).await {
            tracing::debug!(error = %e, "create network (another worker may have made it)");
        }
    }
    let found = named_networks(docker, name).await?;
    let Some(keep) = oldest_network(&found) else {
        anyhow::bail!("cannot create the agents' network `{name}`");
    };
    for (_, other) in found.iter().filter(|(_, id)| *id != keep) {
        let _ = docker.remove_network(other).await;
    }
    Ok(keep)
}

/// The id of the oldest of (created, id) pairs, ties by id: the one network
/// every worker keeps. Docker writes `created` with its trailing zeros cut
/// (`…58.12345Z` is earlier than `…58.123456789Z`), so the times are compared
/// as times, not as text: compared as text, two workers could each keep a
/// different network and remove the other's.
fn oldest_network(found: &[(String, String)]) -> Option<String> {
    found
        .iter()
        .min_by_key(|(created, id)| {
            let at = chrono::DateTime::parse_from_rfc3339(created).ok();
            // An unreadable time sorts last.
            (at.is_none(), at, id.clone())
        })
        .map(|(_, id)| id.clone())
}

/// Docker's own network modes, never made or removed by agentq.
pub(super) fn is_builtin_network(mode: &str) -> bool {
    matches!(mode, "none" | "host" | "bridge" | "default") || mode.starts_with("container:")
}

/// Whether Docker refused a create because network `name` is missing or
/// ambiguous.
pub(super) fn network_missing_or_ambiguous(e: &bollard::errors::Error, name: &str) -> bool {
    let bollard::errors::Error::DockerResponseServerError { message, .. } = e else {
        return false;
    };
    message.contains(&format!("network {name}"))
        && (message.contains("not found") || message.contains("ambiguous"))
}

/// (created, id) of the networks named exactly `name`.
async fn named_networks(docker: &Docker, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let list = docker
        .list_networks(Some(
            bollard::query_parameters::ListNetworksOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await?;
    Ok(list
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| Some((n.created.unwrap_or_default(), n.id?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use bollard::errors::Error;

    use super::*;

    #[test]
    fn a_missing_or_doubled_network_is_told_from_other_refusals() {
        let refusal = |status_code, message: &str| Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        };
        let net = "agentq-agents";
        assert!(network_missing_or_ambiguous(
            &refusal(404, "network agentq-agents not found"),
            net
        ));
        assert!(network_missing_or_ambiguous(
            &refusal(
                400,
                "network agentq-agents is ambiguous (2 matches found based on name)"
            ),
            net
        ));
        assert!(!network_missing_or_ambiguous(
            &refusal(404, "No such image: agentq-test-agent:latest"),
            net
        ));
        assert!(!network_missing_or_ambiguous(
            &refusal(404, "network other not found"),
            net
        ));
        assert!(is_builtin_network("none") && is_builtin_network("container:abc"));
        assert!(!is_builtin_network(net));
    }

    #[test]
    fn the_oldest_network_is_found_by_time_not_by_text() {
        let found = vec![
            // Later, but sorts first as text ('6' < 'Z').
            (
                "2026-11-29T00:45:58.123456789Z".to_string(),
                "b".to_string(),
            ),
            ("2026-11-29T00:45:58.12345Z".to_string(), "c".to_string()),
            ("garbled".to_string(), "a".to_string()),
        ];
        assert_eq!(oldest_network(&found).as_deref(), Some("c"));
        let tie = vec![
            ("2026-11-29T00:45:58Z".to_string(), "y".to_string()),
            ("2026-11-29T00:45:58.000Z".to_string(), "x".to_string()),
        ];
        assert_eq!(oldest_network(&tie).as_deref(), Some("x"));
        assert_eq!(oldest_network(&[]), None);
    }
}
