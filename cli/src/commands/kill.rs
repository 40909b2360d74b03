//! `corral kill`: not available yet. The Operator API has no kill call and only a task's own
//! framework may kill it through the Scheduler API; impersonating the framework is not an
//! option. This needs an `Operator.KillTask` RPC in the master.

use crate::cli::KillArgs;
use crate::commands::Exit;

pub(super) async fn run(args: KillArgs) -> anyhow::Result<u8> {
    Err(Exit {
        code: 2,
        message: format!(
            "cannot kill task {}: the master's Operator API has no kill call yet (only the task's framework can kill it)",
            args.task
        ),
    }
    .into())
}
