//! `corral run`: one task through the framework SDK, with its output streamed.
//!
//! ```text
//! resolve module (upload a file) ─▶ subscribe (SDK) ─▶ first offer that fits ─▶ launch
//!   ─▶ poll ReadFile(stdout, stderr) through the master while it runs
//!   ─▶ terminal status ─▶ drain the files ─▶ usage summary ─▶ teardown ─▶ exit code
//! ```
//!
//! [`run_task`] is shared with `corral dev`, which runs the example tasks the same way.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use corral_proto::{EnvVar, InputFile, InputSource, limits};
use corral_scheduler::matching::{self, Constraint, ResourceRequest, Strategy, TaskRequest};
use corral_scheduler::{
    AgentId, Driver, FrameworkConfig, FrameworkId, ModuleSource, Offer, Preopen, Reason, Scheduler,
    TaskId, TaskInfo, TaskLimits, TaskState, TaskStatus,
};
use corral_types::{COMPONENTS_ATTRIBUTE, Digest, TrapKind, WasmBinary};
use tokio::sync::mpsc;

use crate::cli::{OutputFormat, RunArgs};
use crate::client::{self, OperatorClient};
use crate::commands::Exit;
use crate::commands::follow::FileFollower;
use crate::commands::shipped::{self, ShippedDir};
use crate::commands::wasm_file::wasm_binary;
use crate::parse::{WasiOption, WasmOption, show_bytes};

/// How long `corral run` waits for an offer that fits before giving up.
const OFFER_WAIT: Duration = Duration::from_secs(30);
/// How often a running task's files are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A `--file`, or a `--dir`'s archive, past this size goes through the artifact store rather
/// than with the task.
const INLINE_FILE_BYTES: usize = 1 << 20;
/// What a task carries with it (`--dir` archives and `--file`s of [`INLINE_FILE_BYTES`] or
/// less, together): with stdin (at most `limits::MAX_STDIN_BYTES`) and the rest of the task,
/// well within one message.
const INLINE_INPUT_BYTES: usize = 8 << 20;

pub(super) async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let args = with_wasmtime_options(args);
    let masters = args.master.master.clone();
    let (module_arg, task_args) = split_module_and_args(&args.module_and_args)?;
    let (mut inputs, preopens, shipped) =
        sandbox(&args.files, &args.artifact_inputs, &args.dirs, args.disk)?;
    for line in shipped.iter().flat_map(ShippedDir::not_shipped) {
        eprintln!("corral: {line}");
    }
    let stdin = if args.no_stdin {
        Bytes::new()
    } else {
        read_stdin()?
    };
    // Read a local module before connecting, so a missing file is reported as such.
    let module = parse_module(module_arg)?;
    let mut placement = TaskRequest::new(ResourceRequest {
        cpus_milli: args.cpus,
        mem_bytes: args.mem,
        disk_bytes: args.disk,
        ..ResourceRequest::default()
    });
    // Only agents that say they run components are offered one.
    if let Module::Local(_, WasmBinary::Component) = &module {
        let (key, value) = COMPONENTS_ATTRIBUTE;
        placement = placement.constraint(Constraint::equals(key, value));
    }
    let mut client = client::operator(&masters).await?;
    upload_large_files(&mut client, &mut inputs).await?;
    let module = match module {
        Module::Source(source) => source,
        Module::Local(bytes, _) => {
            ModuleSource::Digest(client::upload(&mut client, bytes, true).await?)
        }
    };
    let id = TaskId::new(format!(
        "run-{}-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        std::process::id()
    ))?;
    let base_name = base_name(module_arg);
    let name = args.name.clone().unwrap_or_else(|| {
        Path::new(&base_name)
            .file_stem()
            .map_or_else(|| "task".into(), |s| s.to_string_lossy().into_owned())
    });
    let task = TaskInfo {
        id,
        name,
        module,
        entrypoint: args
            .invoke
            .clone()
            .unwrap_or_else(|| corral_proto::DEFAULT_ENTRYPOINT.into()),
        args: task_args.to_vec(),
        env: args
            .env
            .iter()
            .map(|(name, value)| EnvVar::plain(name, value))
            .chain(
                args.secret_env
                    .iter()
                    .map(|(name, value)| EnvVar::secret(name, value)),
            )
            .collect(),
        inputs,
        resources: placement.resources.to_resources(),
        limits: TaskLimits {
            max_fuel: args.max_fuel,
            timeout: args.timeout,
            max_output_bytes: None,
        },
        labels: Default::default(),
        argv0: Some(args.argv0.clone().unwrap_or(base_name)),
        preopens,
        stdin,
        checkpoint: Default::default(),
        owner: None,
    };
    let task_id = task.id.clone();
    let document = matches!(args.output, OutputFormat::Json | OutputFormat::Yaml);
    let (status, framework) = run_task(&masters, &mut client, task, placement, !document).await?;
    if document {
        print_task(&mut client, args.output, &task_id, framework.as_ref()).await?;
    } else {
        report(&status, &task_id);
    }
    if let Some(dir) = &args.outputs_into
        && !status.outputs.is_empty()
    {
        super::task::download_all(&mut client, &status.outputs, dir).await?;
        eprintln!("outputs: written into {}", dir.display());
    }
    if let Some(not_kept) = &status.outputs_not_kept {
        eprintln!("corral: outputs not kept: {not_kept}");
    }
    let (code, message) = outcome(&status, args.mem, args.disk);
    if let Some(message) = message {
        eprintln!("corral: {message}");
    }
    // A task that never ran changed nothing: there is nothing to bring back.
    if !args.no_sync && sandbox_readable(&status) && !could_not_start(status.reason) {
        let task = shipped::Task {
            id: task_id.as_str(),
            framework: framework.as_ref().map(FrameworkId::as_str),
        };
        for dir in &shipped {
            match dir.sync_back(&mut client, &task).await {
                Ok(report) => {
                    for line in report.lines(dir.host()) {
                        eprintln!("corral: {line}");
                    }
                }
                Err(e) => {
                    eprintln!(
                        "corral: the task's changes to {} were not copied back: {e:#}",
                        dir.host().display()
                    );
                    return Ok(code.max(1));
                }
            }
        }
    }
    Ok(code)
}

/// The ended task's usage, result and outputs, on stderr.
fn report(status: &TaskStatus, task_id: &TaskId) {
    if let Some(usage) = &status.usage {
        eprintln!("{}", usage_line(usage));
    }
    if let Some(result) = &status.result_json {
        eprintln!("result: {result}");
    }
    if !status.outputs.is_empty() {
        let bytes: u64 = status.outputs.iter().map(|o| o.size).sum();
        let n = status.outputs.len();
        eprintln!(
            "outputs: {n} {} ({}): corral task outputs {task_id}",
            if n == 1 { "file" } else { "files" },
            show_bytes(bytes)
        );
    }
}

/// The task's document, as the master lists it, on stdout.
async fn print_task(
    client: &mut OperatorClient,
    format: OutputFormat,
    task: &TaskId,
    framework: Option<&FrameworkId>,
) -> anyhow::Result<()> {
    let listed = client
        .list_tasks(corral_proto::v1::ListTasksRequest {
            task_id: Some(task.to_string()),
            framework_id: framework.map(ToString::to_string),
            ..Default::default()
        })
        .await?
        .into_inner()
        .tasks;
    let Some(summary) = listed.first() else {
        anyhow::bail!("the master no longer lists task {task}");
    };
    crate::output::print_doc(format, &corral_proto::json::task(summary))
}

/// The module and the task's arguments; a `--` right after the module is dropped, so both
/// `corral run m.wasm a b` (as `wasmtime run`) and `corral run m.wasm -- a b` work.
fn split_module_and_args(all: &[String]) -> Result<(&str, &[String]), Exit> {
    let (module, rest) = all
        .split_first()
        .ok_or_else(|| Exit::invalid("give a module to run"))?;
    let rest = match rest.split_first() {
        Some((first, after)) if first == "--" => after,
        _ => rest,
    };
    Ok((module, rest))
}

/// This shell's stdin, whole, as the task's, unless it is a terminal: `wasmtime run` lets a
/// guest read a pipe or a file given as stdin, and so does `corral run`, by shipping it with
/// the task (a task cannot read a terminal on another machine).
fn read_stdin() -> anyhow::Result<Bytes> {
    use std::io::{IsTerminal, Read};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(Bytes::new());
    }
    let cap = corral_proto::limits::MAX_STDIN_BYTES;
    let mut bytes = Vec::new();
    stdin
        .lock()
        .take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Exit::invalid(format!("cannot read stdin: {e}")))?;
    if bytes.len() > cap {
        return Err(Exit::invalid(format!(
            "stdin is over {}; ship large data with --file or --dir (or pass --no-stdin)",
            show_bytes(cap as u64)
        ))
        .into());
    }
    Ok(bytes.into())
}

/// The last component of the module as given: `wasmtime run`'s argv[0], which keeps the
/// host's directories out of the guest.
fn base_name(module: &str) -> String {
    Path::new(module)
        .file_name()
        .map_or_else(|| module.to_owned(), |s| s.to_string_lossy().into_owned())
}

/// Whether a task ended for this reason never ran: its module or its inputs were not to be
/// had, or it was not a task at all.
fn could_not_start(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::InvalidModule
            | Reason::ModuleTooLarge
            | Reason::LinkError
            | Reason::MissingEntrypoint
            | Reason::InvalidTask
            | Reason::FetchFailed
            | Reason::InputUnavailable
    )
}

/// Whether a task that ended this way still has a sandbox to read.
fn sandbox_readable(status: &TaskStatus) -> bool {
    !matches!(
        status.state,
        TaskState::Unreachable | TaskState::Lost | TaskState::Gone
    )
}

/// `--file`, `--input` and `--dir` as the task's inputs and preopens, and the directories to
/// sync back. What `--file` and `--dir` bring must fit in the task's `disk`.
fn sandbox(
    files: &[std::path::PathBuf],
    artifacts: &[(Digest, String)],
    dirs: &[String],
    disk: u64,
) -> anyhow::Result<(Vec<InputFile>, Vec<Preopen>, Vec<ShippedDir>)> {
    let mut inputs = Vec::new();
    for file in files {
        let contents = std::fs::read(file)
            .map_err(|e| Exit::invalid(format!("cannot read --file {}: {e}", file.display())))?;
        if contents.len() as u64 > limits::MAX_ARTIFACT_BYTES {
            return Err(Exit::invalid(format!(
                "--file {} is {}; a file shipped with a task is at most {}",
                file.display(),
                show_bytes(contents.len() as u64),
                show_bytes(limits::MAX_ARTIFACT_BYTES)
            ))
            .into());
        }
        let base = file
            .file_name()
            .ok_or_else(|| Exit::invalid(format!("--file {} has no file name", file.display())))?;
        inputs.push(InputFile {
            path: base.to_string_lossy().into_owned(),
            source: InputSource::Contents(contents.into()),
        });
    }
    inputs.extend(artifacts.iter().map(|(digest, path)| InputFile {
        path: path.clone(),
        source: InputSource::Artifact(*digest),
    }));
    let in_root = !inputs.is_empty();
    let mut shipped = Vec::new();
    let mut inline = inline_bytes(&inputs);
    for (index, spec) in dirs.iter().enumerate() {
        let (host, guest) = shipped::parse_dir(spec)?;
        let (dir, input) = ShippedDir::ship(index, host, guest)?;
        inline += inline_bytes(std::slice::from_ref(&input));
        if inline > INLINE_INPUT_BYTES {
            return Err(Exit::invalid(format!(
                "--dir {}: the task would carry {} of files with it, past the {} it may \
                 (its --dir directories and --file files of {} or less, together)",
                dir.host().display(),
                show_bytes(inline as u64),
                show_bytes(INLINE_INPUT_BYTES as u64),
                show_bytes(INLINE_FILE_BYTES as u64),
            ))
            .into());
        }
        inputs.push(input);
        shipped.push(dir);
    }
    let file_bytes: u64 = inputs
        .iter()
        .map(|input| match &input.source {
            InputSource::Contents(bytes) => bytes.len() as u64,
            _ => 0,
        })
        .chain(shipped.iter().map(ShippedDir::file_bytes))
        .sum();
    if file_bytes > disk {
        return Err(Exit::invalid(format!(
            "--file and --dir bring {} of files, more than the task's disk ({}): give it a \
             larger --disk",
            show_bytes(file_bytes),
            show_bytes(disk)
        ))
        .into());
    }
    let mut preopens: Vec<Preopen> = shipped.iter().map(ShippedDir::preopen).collect();
    // Without `--dir` the agent preopens the root as `/` itself; with it, `--file`s and
    // `--input`s need it.
    if !preopens.is_empty() && in_root {
        preopens.push(Preopen {
            guest_path: "/".into(),
            sandbox_path: ".".into(),
        });
    }
    Ok((inputs, preopens, shipped))
}

/// The bytes of `inputs` that travel with the task: `--file`s and `--dir` archives of
/// [`INLINE_FILE_BYTES`] or less (larger ones are uploaded).
fn inline_bytes(inputs: &[InputFile]) -> usize {
    inputs
        .iter()
        .map(|input| match &input.source {
            InputSource::Contents(bytes) | InputSource::TarArchive(bytes) if !to_upload(bytes) => {
                bytes.len()
            }
            _ => 0,
        })
        .sum()
}

/// Whether a `--file` or a `--dir`'s archive goes through the artifact store rather than
/// with the task.
fn to_upload(contents: &[u8]) -> bool {
    contents.len() > INLINE_FILE_BYTES
}

/// Puts each `--file` and `--dir` archive past [`INLINE_FILE_BYTES`] in the artifact store
/// and has the task fetch it from there (a file as a job's `file` inputs are, an archive to
/// be unpacked).
async fn upload_large_files(
    client: &mut OperatorClient,
    inputs: &mut [InputFile],
) -> anyhow::Result<()> {
    for input in inputs {
        let (bytes, fetched): (_, fn(Digest) -> InputSource) = match &input.source {
            InputSource::Contents(bytes) => (bytes, InputSource::Artifact),
            InputSource::TarArchive(bytes) => (bytes, InputSource::TarArtifact),
            _ => continue,
        };
        if to_upload(bytes) {
            let digest = client::upload(client, bytes.to_vec(), true).await?;
            input.source = fetched(digest);
        }
    }
    Ok(())
}

/// `args` with wasmtime's `-W` and `-S` options folded into the flags they stand for.
fn with_wasmtime_options(mut args: RunArgs) -> RunArgs {
    for option in args.wasm_options.iter().flat_map(|o| &o.0) {
        match option {
            WasmOption::Fuel(fuel) => args.max_fuel = Some(*fuel),
            WasmOption::MaxMemorySize(bytes) => args.mem = *bytes,
            WasmOption::Timeout(timeout) => args.timeout = Some(*timeout),
        }
    }
    // The last `inherit-env` given decides.
    let inherit_env = args
        .wasi_options
        .iter()
        .flat_map(|o| &o.0)
        .map(|WasiOption::InheritEnv(on)| *on)
        .next_back()
        .unwrap_or(false);
    if inherit_env {
        // This shell's variables (those that are text), then the `--env`s, which win.
        let given = std::mem::take(&mut args.env);
        let inherited: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| !given.iter().any(|(g, _)| g == k))
            .collect();
        args.env = inherited.into_iter().chain(given).collect();
    }
    args
}

/// A module named on the command line.
enum Module {
    /// A digest or URL the agent fetches.
    Source(ModuleSource),
    /// A local file's binary, to upload, and its kind.
    Local(Vec<u8>, WasmBinary),
}

/// A digest, a URL, or a local file (read here, uploaded later).
fn parse_module(module: &str) -> anyhow::Result<Module> {
    if module.starts_with("sha256:") {
        let digest = module
            .parse()
            .map_err(|e| Exit::invalid(format!("invalid module digest {module:?}: {e}")))?;
        return Ok(Module::Source(ModuleSource::Digest(digest)));
    }
    if module.starts_with("http://") || module.starts_with("https://") {
        return Ok(Module::Source(ModuleSource::Url {
            url: module.to_owned(),
            digest: None,
        }));
    }
    let bytes = std::fs::read(module)
        .map_err(|e| Exit::invalid(format!("cannot read module {module}: {e}")))?;
    let (binary, kind) = wasm_binary(module, bytes)?;
    Ok(Module::Local(binary, kind))
}

enum Event {
    Launched,
    /// Boxed: a status is large, the other events small.
    Status(Box<TaskStatus>),
    Error(String),
}

/// A framework that launches one task on the first offer that fits.
struct OneTask {
    task: Option<TaskInfo>,
    request: TaskRequest,
    events: mpsc::UnboundedSender<Event>,
}

#[async_trait::async_trait]
impl Scheduler for OneTask {
    async fn subscribed(&mut self, _driver: &Driver, framework_id: &FrameworkId) {
        tracing::debug!(%framework_id, "subscribed");
    }

    async fn offers(&mut self, driver: &Driver, offers: Vec<Offer>) {
        let mut used = None;
        if let Some(task) = self.task.take() {
            let placement = matching::place(
                std::slice::from_ref(&self.request),
                &offers,
                Strategy::BinPack,
            );
            if let Some((offer_id, _)) = placement.into_iter().next() {
                match driver
                    .launch(std::slice::from_ref(&offer_id), vec![task])
                    .await
                {
                    Ok(()) => {
                        let _ = self.events.send(Event::Launched);
                        let _ = driver.suppress(&[]).await;
                    }
                    Err(e) => {
                        let _ = self
                            .events
                            .send(Event::Error(format!("launch failed: {e}")));
                    }
                }
                used = Some(offer_id);
            } else {
                self.task = Some(task);
            }
        }
        let unused: Vec<_> = offers
            .into_iter()
            .map(|o| o.id)
            .filter(|id| Some(id) != used.as_ref())
            .collect();
        if !unused.is_empty() {
            let _ = driver.decline(&unused, Duration::from_secs(1)).await;
        }
    }

    async fn status_update(&mut self, _driver: &Driver, status: TaskStatus) {
        let _ = self.events.send(Event::Status(Box::new(status)));
    }

    async fn agent_lost(&mut self, _driver: &Driver, agent_id: &AgentId) {
        tracing::debug!(%agent_id, "agent lost");
    }

    async fn error(&mut self, _driver: &Driver, message: String) {
        let _ = self.events.send(Event::Error(message));
    }
}

/// Runs `task` as a one-task framework and streams its stdout and stderr to this process's;
/// returns its last status (terminal, or UNREACHABLE when its agent went away) and the
/// framework it ran under, which names its sandbox when the task ID is not unique.
pub(crate) async fn run_task(
    masters: &[String],
    client: &mut OperatorClient,
    task: TaskInfo,
    request: TaskRequest,
    follow_output: bool,
) -> anyhow::Result<(TaskStatus, Option<FrameworkId>)> {
    let (out, err) = (&mut std::io::stdout(), &mut std::io::stderr());
    let task_id = task.id.clone();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let config = FrameworkConfig {
        failover_timeout: Duration::ZERO,
        token: crate::client::dialer().token().clone(),
        tls: crate::client::dialer().tls().cloned(),
        ..FrameworkConfig::new("corral-run", masters.iter().cloned())
    };
    let (driver, handle) = corral_scheduler::spawn(
        config,
        OneTask {
            task: Some(task),
            request: request.clone(),
            events: events_tx,
        },
    );
    let mut stdout = FileFollower::new(task_id.as_str(), None, "stdout");
    let mut stderr = FileFollower::new(task_id.as_str(), None, "stderr");
    let mut running = false;
    let mut launched = false;
    let offer_deadline = tokio::time::sleep(OFFER_WAIT);
    tokio::pin!(offer_deadline);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    let result: anyhow::Result<TaskStatus> = loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Launched) => launched = true,
                Some(Event::Status(status)) => {
                    tracing::debug!(state = ?status.state, reason = ?status.reason, "status");
                    if matches!(status.state, TaskState::Running | TaskState::Starting) {
                        running = true;
                    }
                    if status.state.is_terminal() || status.state == TaskState::Unreachable {
                        break Ok(*status);
                    }
                }
                Some(Event::Error(message)) => break Err(anyhow::anyhow!("the master refused the framework: {message}")),
                None => break Err(anyhow::anyhow!("the framework stopped unexpectedly")),
            },
            _ = tick.tick(), if running && follow_output => {
                read_logs(&driver, client, [(&mut stdout, &mut *out), (&mut stderr, &mut *err)], false).await;
            }
            () = &mut offer_deadline, if !launched => {
                break Err(Exit {
                    code: 1,
                    message: format!(
                        "no agent offered enough resources within {}s (asked for {} cpu, {} mem, {} disk); is an agent running?",
                        OFFER_WAIT.as_secs(),
                        crate::output::cpus(request.resources.cpus_milli),
                        show_bytes(request.resources.mem_bytes),
                        show_bytes(request.resources.disk_bytes),
                    ),
                }
                .into());
            }
        }
    };
    if let Ok(status) = &result
        && follow_output
        && sandbox_readable(status)
    {
        read_logs(
            &driver,
            client,
            [(&mut stdout, out), (&mut stderr, err)],
            true,
        )
        .await;
    }
    let framework = driver.framework_id();
    if driver.teardown().await.is_err() {
        driver.stop();
    }
    if tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .is_err()
    {
        driver.stop();
    }
    result.map(|status| (status, framework))
}

/// Copies what the task wrote since the last read to the sinks. A file not readable yet (the
/// task is being placed, its agent is away) is tried again on the next tick; on the `last`
/// read, once the task has ended, the user is told what could not be shown and why (a task
/// that failed before it had a sandbox has nothing to show).
async fn read_logs(
    driver: &Driver,
    client: &mut OperatorClient,
    files: [(&mut FileFollower, &mut dyn Write); 2],
    last: bool,
) {
    for (file, sink) in files {
        file.framework = driver.framework_id().map(|id| id.to_string());
        match file.read_new(client, sink).await {
            Ok(_) => {}
            Err(status)
                if last
                    && !matches!(
                        status.code(),
                        tonic::Code::NotFound | tonic::Code::FailedPrecondition
                    ) =>
            {
                eprintln!(
                    "warning: cannot show the task's {}: {}",
                    file.path(),
                    status.message()
                );
            }
            Err(status) => {
                tracing::debug!(file = file.path(), %status, "cannot read the task's file yet");
            }
        }
    }
}

/// `usage: fuel 1234, cpu 1.2ms, peak memory 1.1 MiB, wall 3.4ms`.
pub(crate) fn usage_line(usage: &corral_types::Usage) -> String {
    format!(
        "usage: fuel {}, cpu {:.1?}, peak memory {}, wall {:.1?}",
        usage.fuel_consumed,
        usage.cpu_time,
        show_bytes(usage.peak_memory_bytes),
        usage.wall_time
    )
}

/// The exit code for a final status, and what to tell the user (none for a clean exit).
pub(crate) fn outcome(status: &TaskStatus, mem: u64, disk: u64) -> (u8, Option<String>) {
    let exit_code = status.usage.as_ref().and_then(|u| u.exit_code);
    let detail = if status.message.is_empty() {
        String::new()
    } else {
        format!(": {}", status.message)
    };
    match (status.state, status.reason) {
        (TaskState::Finished, _) => (0, None),
        (_, Reason::Exited) => match exit_code {
            // Exit codes are truncated to a byte as a shell does; a non-zero code never maps to 0.
            Some(code) => {
                let byte = u8::try_from(code & 0xff).unwrap_or(1);
                (
                    if byte == 0 { 1 } else { byte },
                    Some(format!("task exited with code {code}")),
                )
            }
            None => (1, Some(format!("task failed{detail}"))),
        },
        (_, Reason::OutOfFuel) => (
            1,
            Some(format!(
                "task ran out of fuel after {} units",
                status.usage.as_ref().map_or(0, |u| u.fuel_consumed)
            )),
        ),
        (_, Reason::MemoryLimit) => (
            1,
            Some(format!(
                "task exceeded its memory limit of {}",
                show_bytes(mem)
            )),
        ),
        (_, Reason::Timeout) => (
            124,
            Some(match status.usage.as_ref() {
                Some(u) => format!("task timed out after {:.1?}", u.wall_time),
                None => format!("task timed out{detail}"),
            }),
        ),
        (_, Reason::DiskLimit) => (
            1,
            Some(format!(
                "task exceeded its disk limit of {}",
                show_bytes(disk)
            )),
        ),
        (_, Reason::OutputLimit) => (1, Some(format!("task exceeded its output limit{detail}"))),
        // What `wasmtime run` exits with: 134 (a shell's "killed by SIGABRT") on a trap, 1
        // when a host call failed.
        (_, Reason::Trap) => (
            if status.trap_kind == Some(TrapKind::HostError) {
                1
            } else {
                134
            },
            Some(format!(
                "task trapped{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    detail.clone()
                }
            )),
        ),
        (TaskState::Killed, _) | (_, Reason::TaskKilledByRequest) => {
            (137, Some(format!("task was killed{detail}")))
        }
        (TaskState::Unreachable, _) | (_, Reason::AgentUnreachable) => (
            1,
            Some(format!(
                "task's agent became unreachable; the task was lost{detail}"
            )),
        ),
        (_, Reason::AgentRestarted) => (1, Some(format!("task's agent restarted{detail}"))),
        (TaskState::Lost | TaskState::Gone, _) => {
            (1, Some(format!("task was lost with its agent{detail}")))
        }
        (_, reason) if could_not_start(reason) => (
            2,
            Some(format!(
                "task could not start ({:?}){detail}",
                status.reason
            )),
        ),
        (state, reason) => (
            1,
            Some(format!("task ended {state:?} ({reason:?}){detail}")),
        ),
    }
}
