//! The command line, as clap types.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use corral_master::StoreConfig;

use crate::parse;

mod argv;
mod job;
mod security;
pub(crate) use job::*;
pub(crate) use security::*;

/// Corral: a cluster manager that runs WebAssembly tasks.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// A file holding the bearer token to present to masters. Without it: `CORRAL_TOKEN`,
    /// else the token `corral login` stored, else none.
    #[arg(long, global = true, env = "CORRAL_TOKEN_FILE", value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): connect to masters over TLS, verifying them
    /// against it (`corral tls init` makes one).
    #[arg(long, global = true, env = "CORRAL_CA_CERT", value_name = "FILE")]
    pub(crate) ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a master until Ctrl-C.
    Master(MasterArgs),
    /// Run an agent until Ctrl-C; or drain or reactivate one.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Examples:\n  corral agent --master 10.0.0.1:5050 --listen 10.0.0.7:5051 --ca-cert tls/ca.pem --tls-cert tls/agent.pem --tls-key tls/agent-key.pem   # run an agent\n  corral agent drain <agent> --deadline 10m   # no new tasks; running ones get 10 minutes\n  corral agent reactivate <agent>"
    )]
    Agent(AgentCmd),
    /// Run a master and agents in one process, run the example tasks, stay up until Ctrl-C.
    Dev(DevArgs),
    /// Run one task, stream its output and exit with its exit code.
    Run(RunArgs),
    /// List tasks.
    Ps(PsArgs),
    /// Print a task's stdout (or stderr).
    Logs(LogsArgs),
    /// Kill a task and wait until it is terminal.
    Kill(KillArgs),
    /// A task's outputs: list them, or download them.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Create a new task crate.
    #[command(subcommand)]
    New(NewCommand),
    /// Built-in jobs: batch, service and cron.
    #[command(subcommand)]
    Job(JobCommand),
    /// List agents.
    Agents(ListArgs),
    /// List frameworks; or run the built-in jobs framework as a process of its own.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Examples:\n  corral frameworks            # list them\n  corral master --no-builtin-frameworks &\n  corral frameworks run --master 127.0.0.1:5050 --listen 127.0.0.1:5060\n  corral job ls                # the CLI finds the Jobs service where it runs"
    )]
    Frameworks(FrameworksCmd),
    /// Reserve free resources of an agent to a role (a dynamic reservation).
    Reserve(ReserveArgs),
    /// Give a role's unused reserved resources on an agent back.
    Unreserve(ReserveArgs),
    /// Load a cluster with tiny tasks and report throughput, latency and memory.
    Bench(BenchArgs),
    /// List roles: weight, quota, allocation, dominant share and frameworks of each.
    Roles(ListArgs),
    /// List the modules in the master's artifact store: size, tasks running them, agents
    /// caching them.
    Modules(ListArgs),
    /// Print a shell completion script: `corral completions bash > /etc/bash_completion.d/corral`.
    Completions(CompletionsArgs),
    /// Check a token against the master and keep it for later commands (in the user's
    /// config directory, readable by the user only).
    #[command(
        after_help = "Examples:\n  corral login --master 10.0.0.1:5050 < alice.token\n  corral login --token-file alice.token"
    )]
    Login(LoginArgs),
    /// Forget the token `corral login` kept.
    Logout,
    /// Make tokens for the master's credentials file.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Make TLS material: a cluster CA and certificates for masters and agents.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Show role weights, or set a role's weight in weighted DRF.
    #[command(
        after_help = "Examples:\n  corral weight              # every role's weight\n  corral weight eng          # one role's weight\n  corral weight eng 3        # eng gets three times the share of a role of weight 1"
    )]
    Weight(WeightArgs),
    /// List, set or remove role quotas (guarantees and limits).
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  corral quota                                    # every quota (same as `corral quota list`)\n  corral quota set eng --guarantee cpus=2,mem=4GiB --limit cpus=8,mem=16GiB\n  corral quota remove eng"
    )]
    Quota(QuotaArgs),
    /// Compile a module read on stdin for an agent (which starts this itself).
    #[command(hide = true)]
    CompileWorker(CompileWorkerArgs),
}

/// What an agent hands its compile worker (see `corral_agent::compile_worker::serve`).
#[derive(Debug, Args)]
pub(crate) struct CompileWorkerArgs {
    /// The agent engine's compatibility.
    pub(crate) compatibility: String,
    /// The agent engine's largest guest stack, in bytes.
    pub(crate) max_wasm_stack: usize,
    /// The heap the compile may use, in bytes.
    pub(crate) memory_bytes: u64,
}

/// How a long-running command (`master`, `agent`, `dev`) logs, to stderr.
#[derive(Debug, Args, Clone)]
pub(crate) struct LogArgs {
    /// What to log: a level (`error`, `warn`, `info`, `debug`, `trace`) or a filter
    /// (`info,corral_master=debug`); `RUST_LOG` when not given, else `info`.
    #[arg(long, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
    /// `text` for people, `json` (one object per line) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Where the master is.
#[derive(Debug, Args, Clone)]
pub(crate) struct MasterAddr {
    /// Master address(es), `host:port`, comma-separated.
    #[arg(
        long,
        env = "CORRAL_MASTER",
        default_value = "127.0.0.1:5050",
        value_delimiter = ','
    )]
    pub(crate) master: Vec<String>,
}

/// How a listing is printed (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// A table for people.
    Table,
    /// The table with more columns, where a listing has more to show.
    Wide,
    /// One JSON document.
    Json,
    /// The same document as YAML.
    Yaml,
}

#[derive(Debug, Args)]
pub(crate) struct MasterArgs {
    #[command(flatten)]
    pub(crate) log: LogArgs,
    /// Where to serve gRPC.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub(crate) listen: SocketAddr,
    /// The master's directory.
    #[arg(long, default_value = "./.corral/master")]
    pub(crate) work_dir: PathBuf,
    /// Where the registry lives: `embedded` (a file in the work dir) or
    /// `etcd://host:port[,host:port...]/prefix` (several masters, one leads).
    #[arg(long, default_value = "embedded", value_parser = clap::value_parser!(StoreConfig))]
    pub(crate) store: StoreConfig,
    /// Reach etcd over TLS, trusting this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub(crate) etcd_ca_cert: Option<PathBuf>,
    /// The certificate this master presents to etcd (`etcd --client-cert-auth`); needs
    /// --etcd-key and --etcd-ca-cert.
    #[arg(long, value_name = "FILE", requires_all = ["etcd_key", "etcd_ca_cert"])]
    pub(crate) etcd_cert: Option<PathBuf>,
    /// The key of --etcd-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub(crate) etcd_key: Option<PathBuf>,
    /// Authenticate to etcd as this user (etcd's `auth enable`); needs
    /// --etcd-password-file.
    #[arg(long, value_name = "NAME", requires = "etcd_password_file")]
    pub(crate) etcd_user: Option<String>,
    /// The file holding --etcd-user's password (its first line), never given on the
    /// command line.
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    pub(crate) etcd_password_file: Option<PathBuf>,
    /// The address agents, clients and other masters reach this master at (default: the
    /// listen address); standbys redirect to the leader's.
    #[arg(long)]
    pub(crate) advertise: Option<String>,
    /// How long agents known from the registry have to re-register after a restart or
    /// failover before they are UNREACHABLE.
    #[arg(long, default_value = "60s", value_parser = parse::duration)]
    pub(crate) agent_reregister_timeout: Duration,
    /// With etcd: the leader's lease; a leader that cannot renew it steps down before it
    /// ends, and a standby takes over about this long after a leader dies.
    #[arg(long, default_value = "10s", value_parser = parse::duration)]
    pub(crate) leader_lease: Duration,
    /// How long an agent may be silent before it is UNREACHABLE (e.g. 5s, for tests: 2s).
    #[arg(long, hide = true, value_parser = parse::duration)]
    pub(crate) agent_timeout: Option<Duration>,
    /// Rescind an offer a framework has neither used nor declined after this long (e.g.
    /// 30s), so a stuck framework cannot hold resources forever; by default offers are kept.
    #[arg(long, value_parser = parse::duration)]
    pub(crate) offer_timeout: Option<Duration>,
    /// The most messages a framework's or an agent's stream may hold unread; one that falls
    /// this far behind is cut off (a framework re-subscribes and is sent its unacknowledged
    /// updates again; an agent reconnects).
    #[arg(long, default_value_t = corral_master::DEFAULT_STREAM_QUEUE as u64, value_parser = clap::value_parser!(u64).range(2..=1 << 24))]
    pub(crate) stream_queue: u64,
    /// The most bytes tasks' outputs may hold in the master's artifact store, cluster-wide;
    /// the outputs of the tasks that finished first are dropped to make room for new ones.
    #[arg(long, default_value = "10GiB", value_parser = parse::bytes)]
    pub(crate) output_store_cap: u64,
    /// Do not run the built-in jobs framework in this master (run it with `corral
    /// frameworks run` instead; two of them would fail each other over).
    #[arg(long)]
    pub(crate) no_builtin_frameworks: bool,
    /// Authenticate every caller: principals and their tokens' SHA-256 (`corral token
    /// new`). Read again on SIGHUP. The master's own token for the other masters is
    /// `--token-file` / `CORRAL_TOKEN`.
    #[arg(long, value_name = "FILE")]
    pub(crate) credentials: Option<PathBuf>,
    /// Who may do what (needs --credentials). Read again on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "credentials")]
    pub(crate) acls: Option<PathBuf>,
    /// Append a JSON line per refused call and per call that changes the cluster.
    #[arg(long, value_name = "FILE")]
    pub(crate) audit_log: Option<PathBuf>,
    /// Per-principal rate limits on requests, task launches and module uploads (TOML; see
    /// the README). Read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub(crate) rate_limits: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) tls: ServeTls,
}

#[derive(Debug, Args)]
pub(crate) struct AgentCmd {
    #[command(subcommand)]
    pub(crate) command: Option<AgentCommand>,
    /// `corral agent` alone runs an agent.
    #[command(flatten)]
    pub(crate) run: AgentArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Drain an agent for maintenance: it gets no new tasks; its running tasks may finish
    /// until the deadline, then are killed.
    Drain(DrainArgs),
    /// Undo a drain: the agent's resources are offered again.
    Reactivate(AgentIdArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The agent's ID (see `corral agents`).
    pub(crate) agent: String,
    /// How long running tasks may go on before they are killed (e.g. 10m); without it they
    /// are killed at once.
    #[arg(long, value_parser = parse::duration)]
    pub(crate) deadline: Option<Duration>,
    /// Mark the agent GONE once drained: it is never admitted again.
    #[arg(long)]
    pub(crate) mark_gone: bool,
    /// Wait until the agent is drained (its tasks ended).
    #[arg(long)]
    pub(crate) wait: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AgentIdArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The agent's ID (see `corral agents`).
    pub(crate) agent: String,
}

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    #[command(flatten)]
    pub(crate) tls: ServeTls,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    /// Master address(es), `host:port`, comma-separated.
    #[arg(long, env = "CORRAL_MASTER", required = true, value_delimiter = ',')]
    pub(crate) master: Vec<String>,
    /// Where to serve the agent's file API.
    #[arg(long, default_value = "127.0.0.1:5051")]
    pub(crate) listen: SocketAddr,
    /// The agent's directory (sandboxes, module cache).
    #[arg(long, default_value = "./.corral/agent")]
    pub(crate) work_dir: PathBuf,
    /// Resources to announce instead of the detected ones: `cpus=1.5,mem=2GiB,disk=10GiB`.
    #[arg(long, value_parser = parse::resources)]
    pub(crate) resources: Option<parse::ResourceSpec>,
    /// An attribute `key=value` (repeatable).
    #[arg(long = "attribute", value_parser = parse::key_value)]
    pub(crate) attributes: Vec<(String, String)>,
    /// What to do if the checkpoint in the work directory is corrupt: `strict` stops with an
    /// error; `cleanup` sets it aside, removes the old sandboxes and registers as a new agent
    /// (the master reports the old agent's tasks lost). A readable checkpoint is always
    /// recovered.
    #[arg(long, value_enum, default_value_t = RecoverMode::Strict)]
    pub(crate) recover: RecoverMode,
    /// Reserve part of the resources to a role, `ROLE:cpus=1,mem=2GiB` (repeatable): offered
    /// to that role and its sub-roles only (a static reservation).
    #[arg(long = "reserve", value_parser = parse::reservation)]
    pub(crate) reservations: Vec<(String, parse::ResourceSpec)>,
    /// Finished tasks whose logs and files are kept (then readable with `corral logs`);
    /// beyond this many the oldest are removed, files and all.
    /// At least 1: `corral run` reads a task's logs after it has finished.
    #[arg(long, default_value = "1000")]
    pub(crate) max_completed_tasks: std::num::NonZeroUsize,
    /// The compile budget: a module is compiled in a child process, killed (and the module
    /// refused) when it takes longer than this.
    #[arg(long, default_value = "60s", value_parser = parse::duration)]
    pub(crate) compile_timeout: Duration,
    /// The compile budget: the heap a module's compile may use.
    #[arg(long, default_value = "2GiB", value_parser = parse::bytes)]
    pub(crate) compile_memory: u64,
    /// With TLS, a subject common name (CN) of the masters' certificates (repeatable): only
    /// a client presenting one reads the agent's task files, not another agent, whose
    /// certificate the same CA signed. `corral tls init` names masters "corral master".
    #[arg(
        long = "master-cert-name",
        value_name = "CN",
        default_value = corral_proto::tls::MASTER_CERT_NAME,
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    pub(crate) master_cert_names: Vec<String>,
}

/// `corral agent --recover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RecoverMode {
    Strict,
    Cleanup,
}

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    pub(crate) log: LogArgs,
    /// Where the master serves gRPC.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub(crate) listen: SocketAddr,
    /// How many agents to run.
    #[arg(long, default_value_t = 2)]
    pub(crate) agents: usize,
    /// Skip the example tasks.
    #[arg(long)]
    pub(crate) no_examples: bool,
    /// Log to the terminal too; without it logs go to `dev.log` in the state directory,
    /// so the examples' output reads cleanly.
    #[arg(long, short)]
    pub(crate) verbose: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// How to report: `table` streams the task's stdout and stderr and reports on stderr;
    /// `json` or `yaml` prints only the ended task's document (as `corral ps -o json` lists
    /// it) on stdout; its output stays readable with `corral logs`. The exit code is the
    /// task's either way.
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
    /// CPU share (fractional cores).
    #[arg(long, default_value = "0.5", value_parser = parse::cpus)]
    pub(crate) cpus: u64,
    /// Memory limit (e.g. 64MiB).
    #[arg(long, default_value = "64MiB", value_parser = parse::bytes)]
    pub(crate) mem: u64,
    /// Disk limit (e.g. 64MiB).
    #[arg(long, default_value = "64MiB", value_parser = parse::bytes)]
    pub(crate) disk: u64,
    /// Fuel budget.
    #[arg(long)]
    pub(crate) max_fuel: Option<u64>,
    /// Wall-clock limit (e.g. 10s, 500ms, 2m).
    #[arg(long, value_parser = parse::duration)]
    pub(crate) timeout: Option<Duration>,
    /// An environment variable `K=V`, or `K` to pass this shell's value (repeatable). The
    /// task's environment is exactly these, as under `wasmtime run`.
    #[arg(long = "env", value_parser = parse::env_var)]
    pub(crate) env: Vec<(String, String)>,
    /// As `--env`, for a secret: its value is shown nowhere but inside the task. `K` alone
    /// takes this shell's value, which keeps it off the command line (repeatable).
    #[arg(long = "secret-env", value_parser = parse::env_var)]
    pub(crate) secret_env: Vec<(String, String)>,
    /// A local file shipped into the sandbox root at its base name (repeatable). With `--dir`,
    /// the root is preopened as `/` after the directories.
    #[arg(long = "file")]
    pub(crate) files: Vec<PathBuf>,
    /// An artifact of the master's store, an earlier task's output say, placed in the
    /// sandbox root: `sha256:<hex>=PATH` (repeatable; see `corral task outputs`).
    #[arg(long = "input", value_parser = parse::artifact_input)]
    pub(crate) artifact_inputs: Vec<(corral_types::Digest, String)>,
    /// Download the task's outputs (its `/outputs` folder) into this directory when it ends.
    #[arg(long)]
    pub(crate) outputs_into: Option<PathBuf>,
    /// A local directory the task sees as `GUEST_DIR` (preopened under that name, as
    /// `wasmtime run --dir`): `HOST_DIR`, `HOST_DIR::GUEST_DIR` or `HOST_DIR:GUEST_DIR`
    /// (repeatable). What the task writes there is copied back when it ends.
    #[arg(long = "dir")]
    pub(crate) dirs: Vec<String>,
    /// Do not copy the task's changes to `--dir` directories back.
    #[arg(long)]
    pub(crate) no_sync: bool,
    /// Give the task an empty stdin. Otherwise, when this shell's stdin is not a terminal (a
    /// pipe or a file), it is read to its end (at most 4 MiB) and becomes the task's stdin.
    #[arg(long)]
    pub(crate) no_stdin: bool,
    /// The task's argv[0]; by default the module file's base name, as `wasmtime run`.
    #[arg(long)]
    pub(crate) argv0: Option<String>,
    /// wasmtime's `-W` options, as `corral run`'s own: `fuel=N` (`--max-fuel`),
    /// `max-memory-size=BYTES` (`--mem`), `timeout=DURATION` (`--timeout`); comma-separated,
    /// repeatable. Given with the flag it stands for, the `-W` option wins.
    #[arg(short = 'W', value_name = "OPT=VALUE,...", value_parser = parse::wasm_options)]
    pub(crate) wasm_options: Vec<parse::WasmOptions>,
    /// wasmtime's `-S` options: `inherit-env` gives the task this shell's whole environment
    /// (then the `--env`s), as under `wasmtime run -S inherit-env`.
    #[arg(short = 'S', value_name = "OPT[=VALUE],...", value_parser = parse::wasi_options)]
    pub(crate) wasi_options: Vec<parse::WasiOptions>,
    /// Call this exported function instead of `_start`, as `wasmtime run --invoke`. Of a core
    /// module: the arguments after the module are its parameters (numbers: i32, i64, f32,
    /// f64), and what it returns is printed, one value per line. Of a component: a call in
    /// WAVE carrying its arguments, `--invoke 'add(1, 2)'`, its result printed in WAVE.
    #[arg(long, value_name = "FUNCTION")]
    pub(crate) invoke: Option<String>,
    /// The task's name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The module (a local `.wasm` file, `sha256:<hex>` in the master's store, or an http(s)
    /// URL), then the task's arguments: everything after the module is the task's, as with
    /// `wasmtime run` (a `--` right after the module is dropped).
    #[arg(
        value_name = "MODULE [ARGS]...",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) module_and_args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// Include terminal tasks.
    #[arg(long, short)]
    pub(crate) all: bool,
    /// Only tasks in these states (comma-separated or repeated: `--state running,failed`);
    /// terminal ones included when named.
    #[arg(long, value_delimiter = ',', value_parser = parse::task_state)]
    pub(crate) state: Vec<corral_types::TaskState>,
    /// Only this framework's tasks.
    #[arg(long)]
    pub(crate) framework: Option<String>,
    /// Only tasks on this agent.
    #[arg(long)]
    pub(crate) agent: Option<String>,
    /// Only tasks with this label `key=value` (repeatable: all of them).
    #[arg(long, short = 'l', value_parser = parse::key_value)]
    pub(crate) label: Vec<(String, String)>,
    /// Only the instances of this built-in job.
    #[arg(long)]
    pub(crate) job: Option<String>,
    /// After the listing, print each task as it changes (one line, or one JSON document, per
    /// change) until interrupted, from the master's event stream; with filters, the changes
    /// that leave a task matching them.
    #[arg(long, short)]
    pub(crate) watch: bool,
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The task ID.
    pub(crate) task: String,
    /// Print stderr instead of stdout.
    #[arg(long)]
    pub(crate) stderr: bool,
    /// Follow the file until the task ends.
    #[arg(long, short)]
    pub(crate) follow: bool,
    /// Only the last N lines (then, with -f, what follows).
    #[arg(long, value_name = "N")]
    pub(crate) tail: Option<u64>,
    /// The task's framework, when two frameworks use the same task ID.
    #[arg(long)]
    pub(crate) framework: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TaskCommand {
    /// List the files a task left in its outputs folder (`/outputs`), kept by the master
    /// when it ended, or download them with `--into`.
    #[command(
        after_help = "Examples:\n  corral task outputs run-17                 # path, size and digest of each\n  corral task outputs run-17 --into results  # download them, checked against their digests\n  corral run --input sha256:<digest>=in.csv next.wasm   # hand one to another task"
    )]
    Outputs(TaskOutputsArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum NewCommand {
    /// Scaffold a Rust task crate that builds and tests out of the box: the task SDK, a
    /// test that runs the module under Corral's executor, `cargo wasm` to build it.
    #[command(
        after_help = "Example:\n  corral new task resize && cd resize\n  cargo test\n  cargo wasm && corral run target/wasm32-wasip1/release/resize.wasm"
    )]
    Task(NewTaskArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NewTaskArgs {
    /// The crate's name (also the module's: NAME.wasm).
    pub(crate) name: String,
    /// Where to create it; by default a directory NAME here.
    #[arg(long)]
    pub(crate) path: Option<PathBuf>,
    /// The `sdk/` directory of a Corral checkout, for the SDK crates (by default the one this
    /// binary was built from).
    #[arg(long)]
    pub(crate) sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct TaskOutputsArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The task ID.
    pub(crate) task: String,
    /// Download the outputs into this directory (made if missing), at their paths.
    #[arg(long)]
    pub(crate) into: Option<PathBuf>,
    /// The task's framework, when two frameworks use the same task ID.
    #[arg(long)]
    pub(crate) framework: Option<String>,
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct KillArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The task ID.
    pub(crate) task: String,
    /// The task's framework, when two frameworks use the same task ID.
    #[arg(long)]
    pub(crate) framework: Option<String>,
    /// Return once the kill is sent, without waiting for the task to end.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// How long to wait for the task to end.
    #[arg(long, default_value = "30s", value_parser = parse::duration)]
    pub(crate) timeout: Duration,
    /// `json` or `yaml`: the ended task's document (with `--no-wait`, what was sent where).
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct FrameworksCmd {
    #[command(subcommand)]
    pub(crate) command: Option<FrameworksCommand>,
    /// `corral frameworks` alone lists them.
    #[command(flatten)]
    pub(crate) list: FrameworksArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FrameworksCommand {
    /// Run the built-in jobs framework until Ctrl-C, serving the Jobs service on `--listen`
    /// (start the masters with `--no-builtin-frameworks`). Its framework says where it serves,
    /// so `corral job ...` given the masters finds it.
    Run(FrameworksRunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FrameworksRunArgs {
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// Where the Jobs service listens.
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub(crate) listen: SocketAddr,
    /// The `host:port` clients reach the Jobs service at (default: `--listen`, a wildcard
    /// address as loopback).
    #[arg(long)]
    pub(crate) advertise: Option<String>,
    #[command(flatten)]
    pub(crate) tls: ServeTls,
}

#[derive(Debug, Args)]
pub(crate) struct FrameworksArgs {
    #[command(flatten)]
    pub(crate) list: ListArgs,
    /// Include completed frameworks.
    #[arg(long, short)]
    pub(crate) all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Load a running cluster at these master address(es); without it (or CORRAL_MASTER), an
    /// ephemeral cluster (one master, `--agents` agents) is started as child processes.
    #[arg(long, env = "CORRAL_MASTER", value_delimiter = ',')]
    pub(crate) master: Option<Vec<String>>,
    /// How many tasks to run (after a short warm-up).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) tasks: usize,
    /// Keep this many tasks in flight (closed loop).
    #[arg(long, default_value_t = 100, conflicts_with = "rate")]
    pub(crate) concurrency: usize,
    /// Submit this many tasks per second instead (open loop).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Agents of the ephemeral cluster.
    #[arg(long, default_value_t = 1)]
    pub(crate) agents: usize,
    /// Register this many simulated agents (no Wasm; tasks finish at once) instead of real
    /// ones, to load the master alone.
    #[arg(long)]
    pub(crate) simulated_agents: Option<usize>,
    /// Start the ephemeral cluster as a production one runs: TLS everywhere (mutual between
    /// the master and its agents) and bearer-token authentication.
    #[arg(long, conflicts_with_all = ["master", "simulated_agents"])]
    pub(crate) secure: bool,
    /// Operator event subscribers (Operator.Subscribe) reading during the run, as UIs or
    /// `corral ps --watch` would.
    #[arg(long, default_value_t = 0)]
    pub(crate) subscribers: usize,
    /// The module every task runs (default: the built-in `hello` example).
    #[arg(long)]
    pub(crate) module: Option<String>,
    /// CPU share of each task.
    #[arg(long, default_value = "0.01", value_parser = parse::cpus)]
    pub(crate) cpus: u64,
    /// Memory of each task.
    #[arg(long, default_value = "8MiB", value_parser = parse::bytes)]
    pub(crate) mem: u64,
    /// Disk of each task.
    #[arg(long, default_value = "1MiB", value_parser = parse::bytes)]
    pub(crate) disk: u64,
    /// Give up on tasks that have not ended after this long.
    #[arg(long, default_value = "300s", value_parser = parse::duration)]
    pub(crate) timeout: Duration,
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
    /// Arguments of every task.
    #[arg(last = true)]
    pub(crate) task_args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct WeightArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The role (`eng`, `eng/batch`, `*`); without it, every role's weight is listed.
    #[arg(value_parser = parse::role)]
    pub(crate) role: Option<String>,
    /// The new weight, from 0.001 to 1000000 (every role weighs 1 until set); without it, the
    /// role's weight is shown.
    #[arg(value_parser = parse::weight, allow_negative_numbers = true)]
    pub(crate) weight: Option<f64>,
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct QuotaArgs {
    #[command(subcommand)]
    pub(crate) command: Option<QuotaCommand>,
    /// `corral quota` alone lists quotas.
    #[command(flatten)]
    pub(crate) list: ListArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QuotaCommand {
    /// List the roles that have a quota, with what they consume.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Set a role's quota, replacing any earlier one: kinds not named are neither guaranteed
    /// nor limited.
    Set(QuotaSetArgs),
    /// Remove a role's quota.
    #[command(aliases = ["rm", "delete"])]
    Remove(RoleArgs),
}

#[derive(Debug, Args)]
pub(crate) struct QuotaSetArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The role (`eng`, `eng/batch`).
    #[arg(value_parser = parse::role)]
    pub(crate) role: String,
    /// Resources offered to the role first while it has demand and held back from other
    /// roles: `cpus=2,mem=4GiB,disk=10GiB` (any subset).
    #[arg(long, value_parser = parse::resources)]
    pub(crate) guarantee: Option<parse::ResourceSpec>,
    /// Most the role and its subroles may consume together: `cpus=8,mem=16GiB` (any subset;
    /// a kind set to 0 allows none, a kind not named is unlimited).
    #[arg(long, value_parser = parse::resources)]
    pub(crate) limit: Option<parse::ResourceSpec>,
    /// Set it even if guarantees exceed the cluster's resources or the limit is below what the
    /// role already consumes (nothing is taken away; the quota is just not met yet).
    #[arg(long)]
    pub(crate) force: bool,
    /// `json` or `yaml`: the role's quota as `corral quota -o json` lists it.
    #[arg(long, short, value_enum, default_value = "table")]
    pub(crate) output: OutputFormat,
}

#[derive(Debug, Args)]
pub(crate) struct RoleArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The role.
    #[arg(value_parser = parse::role)]
    pub(crate) role: String,
}

#[derive(Debug, Args)]
pub(crate) struct ReserveArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
    /// The agent (see `corral agents`).
    pub(crate) agent: String,
    /// The role (`eng`, `eng/batch`; not `*`).
    #[arg(value_parser = parse::role)]
    pub(crate) role: String,
    /// What to reserve: `cpus=1,mem=2GiB,disk=10GiB` (any subset).
    #[arg(value_parser = parse::resources)]
    pub(crate) resources: parse::ResourceSpec,
}
