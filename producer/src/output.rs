//! Printing records for people and for scripts.

use agentq_shared::record::JobRecord;

/// One record, as `key: value` lines, empty fields left out.
pub fn print_record(rec: &JobRecord) {
    let i = &rec.input;
    let mut rows: Vec<(&str, String)> = vec![
        ("id", rec.id.clone()),
        ("state", rec.state.to_string()),
        ("reason", rec.reason.clone()),
        ("agent", i.agent.clone()),
        ("repo", format!("{}/{}", i.org, i.repo)),
        ("task", first_line(&i.task)),
        (
            "attempt",
            format!("{} of {}", rec.attempt, rec.max_attempts),
        ),
        ("runs", rec.runs.to_string()),
        ("host", rec.host.clone()),
        ("worker", rec.worker.clone()),
        ("container", rec.container.clone()),
        (
            "exit_code",
            rec.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        ),
        ("question", rec.question.clone()),
        ("error", rec.error.clone()),
        ("branch", rec.branch.clone()),
        ("workspace", rec.workspace_dir.clone()),
        ("created_at", rec.created_at.clone()),
        ("started_at", rec.started_at.clone()),
        ("finished_at", rec.finished_at.clone()),
        ("updated_at", rec.updated_at.clone()),
    ];
    if i.issue > 0 {
        rows.push(("issue", i.issue.to_string()));
    }
    if i.pr > 0 {
        rows.push(("pr", i.pr.to_string()));
    }
    for (k, v) in rows {
        if !v.is_empty() {
            println!("{k:<12} {v}");
        }
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > 100 {
        format!("{}…", line.chars().take(100).collect::<String>())
    } else {
        line.to_string()
    }
}

/// One JSON document on one line.
pub fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    );
}
