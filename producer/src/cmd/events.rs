//! `agentq events [--follow]`.

use std::time::Duration;

use agentq_shared::{config::Config, store::ops::Event};

use crate::{output, Failure};

/// Print job and pool events (enqueued, started, waiting, finished, pool paused),
/// oldest first; with --follow, keep printing new ones.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep printing new events (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How many past events to print first.
    #[arg(long, default_value_t = 50)]
    pub last: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

fn print(e: &Event, json: bool) {
    if json {
        output::print_json(&serde_json::json!({"id": e.id, "fields": e.fields}));
        return;
    }
    let f = |k: &str| e.fields.get(k).map(String::as_str).unwrap_or("");
    if let Some(ev) = e.fields.get("event") {
        match ev.as_str() {
            "enqueued" => outln!(
                "{} enqueued {} jobs ({} .. {})",
                f("at"),
                f("jobs"),
                f("first"),
                f("last")
            ),
            "cancelled" | "retried" => outln!("{} {} {} jobs", f("at"), ev, f("jobs")),
            "quota" => outln!(
                "{} quota pool={} resumes {}: {}",
                f("at"),
                f("pool"),
                f("resume_at"),
                agentq_shared::text::visible(f("line"))
            ),
            "batch_done" => outln!(
                "{} batch_done batch={} {} of {} completed",
                f("at"),
                f("batch"),
                f("completed"),
                f("jobs")
            ),
            _ => outln!("{} {} pool={} {}", f("at"), ev, f("pool"), f("until")),
        }
    } else {
        outln!(
            "{} {} {} -> {} attempt {} {}",
            f("at"),
            f("job"),
            f("from"),
            f("state"),
            f("attempt"),
            f("host")
        );
    }
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let past = store.recent_events(args.last).await?;
    let mut last = past
        .last()
        .map(|e| e.id.clone())
        .unwrap_or_else(|| "0".into());
    for e in &past {
        print(e, args.json);
    }
    if !args.follow {
        return Ok(0);
    }
    loop {
        for e in store
            .events(&last, 100, Some(Duration::from_secs(5)))
            .await?
        {
            print(&e, args.json);
            last = e.id;
        }
    }
}
