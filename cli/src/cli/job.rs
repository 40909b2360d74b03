//! `corral job ...`: the built-in jobs framework's commands.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{ListArgs, MasterAddr, OutputFormat};

#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Check a job spec (TOML, YAML or JSON) and report every problem with its line and
    /// column; nothing is submitted.
    #[command(
        after_help = "The smallest spec:\n  version = 1\n  name = \"hello-batch\"\n  kind = \"batch\"            # batch | service | cron\n  module = \"hello.wasm\"     # path, sha256:<hex> or URL\n  instances = 200\n  [resources]\n  cpus = 0.1\n  mem = \"32MiB\""
    )]
    Validate(JobValidateArgs),
    /// Submit the jobs of a spec file to the built-in jobs framework. Local files it names
    /// (its module, `file` inputs) are uploaded first; the spec is checked before anything is
    /// sent.
    #[command(
        after_help = "Examples:\n  corral job submit hello.toml --wait   # progress bar; exit 1 if the job fails\n  corral job submit pipeline.yaml -o json"
    )]
    Submit(JobFileArgs),
    /// Update running services to a spec file's new specs: each rolls to its new version
    /// within its `update` bounds (max_unavailable, max_surge, min_running) and is rolled
    /// back if its new instances keep failing (rollback_after).
    #[command(
        after_help = "Examples:\n  corral job update web.toml --wait   # exit 1 if the update was rolled back"
    )]
    Update(JobFileArgs),
    /// List jobs, in submission order.
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// One job: state, instance counts, recent failures.
    Status(JobNameArgs),
    /// Kill a job: its running instances are killed, no more are launched, and jobs that
    /// depend on it fail. Killing a cron job kills its running runs.
    Kill(JobNameArgs),
    /// Scale a service: new instances start; those past the new count are killed,
    /// highest index first.
    Scale(JobScaleArgs),
    /// An instance's output (`<job>.<instance>`); a cron job's latest run's.
    Logs(JobLogsArgs),
    /// A cron job's runs (the last `history_limit` ended ones and those running).
    History(JobNameArgs),
    /// Start a run of a cron job now, whatever its schedule and concurrency policy say.
    RunNow(JobNameArgs),
    /// Suspend a cron job: no run starts until it is resumed (running runs go on).
    Suspend(JobNameArgs),
    /// Resume a suspended cron job from now (runs due while it was suspended are skipped).
    Resume(JobNameArgs),
}

/// `job submit` and `job update`.
#[derive(Debug, Args)]
pub(crate) struct JobFileArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The spec file.
    pub(crate) file: PathBuf,
    /// Its format, when its extension does not say: toml, yaml or json.
    #[arg(long)]
    pub(crate) format: Option<String>,
    /// Wait, showing progress: a submit until every batch job of the file ended and every
    /// service runs all its instances (exit 1 if a job failed or was killed); an update until
    /// every update ended (exit 1 if one was rolled back).
    #[arg(long)]
    pub(crate) wait: bool,
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct JobLogsArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The job's name.
    pub(crate) name: String,
    /// Which instance (from 0).
    #[arg(long, default_value_t = 0)]
    pub(crate) instance: u64,
    /// Print stderr instead of stdout.
    #[arg(long)]
    pub(crate) stderr: bool,
    /// Follow the file until the task ends.
    #[arg(long, short)]
    pub(crate) follow: bool,
    /// Only the last N lines (then, with -f, what follows).
    #[arg(long, value_name = "N")]
    pub(crate) tail: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct JobScaleArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The service's name.
    pub(crate) name: String,
    /// How many instances it should have.
    pub(crate) instances: u64,
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct JobNameArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The job's name.
    pub(crate) name: String,
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct JobValidateArgs {
    /// The spec file.
    pub(crate) file: PathBuf,
    /// Its format, when its extension does not say: toml, yaml or json.
    #[arg(long)]
    pub(crate) format: Option<String>,
}
