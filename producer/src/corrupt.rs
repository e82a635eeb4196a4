//! Jobs whose record does not parse, as the CLI shows them: state `corrupt`
//! (a word of the display only: the job's stored state is whatever it is) and
//! the field named, with exit code 1: the job's problem, not Redis's.

use agentq_shared::{
    record::{JobRecord, RecordView, Unreadable},
    store::JobStore,
};
use serde_json::json;

use crate::{output, Failure};

/// How a job whose record does not parse is shown.
pub const CORRUPT: &str = "corrupt";

/// Exit code of a command that met an unreadable record.
pub const EXIT_CORRUPT: u8 = 1;

/// Job `id`'s record; `None` when it does not parse, after printing it as
/// `corrupt` (one JSON object with `json`).
///
/// # Errors
/// No such job (exit 1); Redis errors (exit 2).
pub async fn readable_or_print(
    store: &JobStore,
    id: &str,
    json: bool,
) -> Result<Option<JobRecord>, Failure> {
    match store.view(id).await? {
        None => Err(Failure::refused(format!(
            "no job with id {id} (see `agentq list`)"
        ))),
        Some(RecordView::Ok(rec)) => Ok(Some(rec)),
        Some(RecordView::Unreadable { id, problem }) => {
            print(&id, &problem, json);
            Ok(None)
        }
    }
}

/// Prints an unreadable job: id, `corrupt`, the field and the error.
pub fn print(id: &str, problem: &Unreadable, json: bool) {
    if json {
        output::print_json(&json!({
            "id": id,
            "state": CORRUPT,
            "field": problem.field,
            "error": problem.to_string(),
        }));
        return;
    }
    outln!("id           {id}");
    outln!("state        {CORRUPT}");
    outln!("field        {}", problem.field.escape_debug());
    outln!("error        {}", problem.to_string().escape_debug());
}
