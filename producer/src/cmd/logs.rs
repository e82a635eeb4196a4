//! `agentq logs ID [--follow] [--full]`: the agent's output, from any host.

use std::{io::Read, time::Duration};

use agentq_shared::{
    config::Config,
    readable::{Invalid, Readable},
    record::JobRecord,
};

use crate::{output, Failure};

/// Print a job's agent output: the tail kept in Redis (at most 2.6 MB, lines
/// over 16 KiB cut with a marker), from any host. The full log is in the
/// workspace's `.meta/agent-{pool}.log` on the worker's host (said on stderr);
/// `--full` prints that file when run there.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job id.
    pub id: String,
    /// Keep printing new output until the job is final.
    #[arg(long, short = 'f', conflicts_with = "full")]
    pub follow: bool,
    /// Print the full log from the worker host's file (run on that host).
    #[arg(long)]
    pub full: bool,
    /// Print JSON: one object per chunk of output (`{"job", "data"}`).
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let rec = crate::job_or_refuse(&store, &args.id).await?;
    if args.full {
        return full(&args, &rec);
    }
    let mut last = "0".to_string();
    let mut shown = Readable::new(Invalid::Hex);
    loop {
        let block = args.follow.then_some(Duration::from_millis(500));
        let (next, bytes) = store.read_log(&args.id, &last, block).await?;
        if !bytes.is_empty() {
            emit(&args, &mut shown, &bytes, false);
        }
        let advanced = next != last;
        last = next;
        if !args.follow {
            break;
        }
        if !advanced {
            let done = store
                .get(&args.id)
                .await?
                .is_none_or(|r| r.state.is_final());
            if done {
                // One last read for output that raced the final state.
                let (_, bytes) = store.read_log(&args.id, &last, None).await?;
                emit(&args, &mut shown, &bytes, true);
                break;
            }
        }
    }
    emit(&args, &mut shown, &[], true);
    // The latest record: a followed job may have moved to another host.
    let rec = store.get(&args.id).await?.unwrap_or(rec);
    if let Some(path) = output::host_log(&rec) {
        errln!(
            "agentq: full log on host {} at {} (`agentq logs --full {}` there)",
            rec.host,
            path.display(),
            rec.id
        );
    }
    Ok(0)
}

fn emit(args: &Args, shown: &mut Readable, bytes: &[u8], last: bool) {
    if args.json {
        if !bytes.is_empty() {
            output::print_json(
                &serde_json::json!({"job": args.id, "data": String::from_utf8_lossy(bytes)}),
            );
        }
    } else {
        output::write_stdout_bytes(shown, bytes, last);
    }
}

/// `--full`: streams the host log file when it is on this machine.
fn full(args: &Args, rec: &JobRecord) -> Result<u8, Failure> {
    let Some(path) = output::host_log(rec) else {
        return Err(Failure::refused(format!(
            "job {} has not run yet: no log file anywhere",
            rec.id
        )));
    };
    // The file at that path is this job's log only on the host that ran it.
    let file = (rec.host == agentq_shared::host::hostname())
        .then(|| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
                .ok()
        })
        .flatten();
    let Some(mut file) = file else {
        return Err(Failure::refused(format!(
            "the full log is on host {} at {}: run `agentq logs --full {}` there",
            rec.host,
            path.display(),
            rec.id
        )));
    };
    let mut shown = Readable::new(Invalid::Hex);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Failure::setup(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        emit(args, &mut shown, &buf[..n], false);
    }
    emit(args, &mut shown, &[], true);
    Ok(0)
}
