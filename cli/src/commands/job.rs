//! `corral job ...`: built-in jobs. `validate` reads a spec file (TOML, YAML or JSON, by its
//! extension or `--format`) and reports every problem with its file, line and column, as
//! `submit` does before anything reaches the cluster. `submit` uploads the local files a spec
//! names and hands it to the jobs framework (Jobs service on the master's port); `update`
//! does the same for services already running, which roll to the new spec; `ls`, `status`
//! and `kill` ask it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use corral_frameworks::spec::{self, Format, InputSource, JobKind, JobSpec, ModuleRef, Schedule};
use corral_proto::v1;
use serde_json::json;

use crate::cli::{
    JobFileArgs, JobLogsArgs, JobNameArgs, JobScaleArgs, JobValidateArgs, ListArgs, LogsArgs,
    OutputFormat,
};
use crate::client::{self, JobsClient};
use crate::commands::Exit;
use crate::commands::wasm_file::wasm_binary;
use crate::output;

/// How often `submit --wait` asks how the jobs are doing.
const WAIT_POLL: Duration = Duration::from_millis(250);

pub(super) async fn submit(args: JobFileArgs) -> anyhow::Result<u8> {
    let masters = &args.master.master;
    let submitted = submit_file(masters, &args.file, args.format.as_deref()).await?;
    if !args.wait {
        print_jobs(args.output, &submitted, "no jobs")?;
        return Ok(0);
    }
    let names: Vec<String> = submitted.into_iter().map(|j| j.name).collect();
    let ended = wait(&mut client::jobs(masters).await?, &names).await?;
    print_jobs(args.output, &ended, "no jobs")?;
    Ok(if all_succeeded(&ended) { 0 } else { 1 })
}

pub(super) async fn update(args: JobFileArgs) -> anyhow::Result<u8> {
    let masters = &args.master.master;
    let updated = send_file(
        masters,
        &args.file,
        args.format.as_deref(),
        SpecCall::Update,
    )
    .await?;
    if !args.wait {
        print_jobs(args.output, &updated, "no jobs")?;
        return Ok(0);
    }
    let names: Vec<String> = updated.into_iter().map(|j| j.name).collect();
    let done = wait_until(&mut client::jobs(masters).await?, &names, rolled_out).await?;
    print_jobs(args.output, &done, "no jobs")?;
    let rolled_back = done.iter().any(|j| j.message.starts_with("rolled back"));
    Ok(if all_succeeded(&done) && !rolled_back {
        0
    } else {
        1
    })
}

/// Whether `update --wait` is done with a service: its update ended (or so did the service).
fn rolled_out(job: &v1::Job) -> bool {
    job.rollout.is_empty() || job.ended_unix_millis != 0
}

/// True when every job succeeded, or (a service or cron job) runs as it should.
pub(crate) fn all_succeeded(jobs: &[v1::Job]) -> bool {
    jobs.iter().all(|j| {
        j.state == v1::JobState::Succeeded as i32
            || (j.kind != "batch" && j.state == v1::JobState::Running as i32)
    })
}

/// Reads a spec file, uploads the local files it names (relative to its directory) and
/// submits it; returns the jobs submitted.
pub(crate) async fn submit_file(
    masters: &[String],
    file: &Path,
    format: Option<&str>,
) -> anyhow::Result<Vec<v1::Job>> {
    send_file(masters, file, format, SpecCall::Submit).await
}

/// What a spec file is sent for.
#[derive(Debug, Clone, Copy)]
enum SpecCall {
    Submit,
    Update,
}

/// Reads a spec file, uploads the local files it names (relative to its directory) and
/// submits it or updates the services it names; returns the jobs.
async fn send_file(
    masters: &[String],
    file: &Path,
    format: Option<&str>,
    call: SpecCall,
) -> anyhow::Result<Vec<v1::Job>> {
    let (format, source, jobs) = read_spec(file, format)?;
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut uploaded = BTreeMap::new();
    let local = local_files(&jobs);
    let modules = local_modules(&jobs);
    if !local.is_empty() {
        let mut operator = client::operator(masters).await?;
        for path in local {
            let full = dir.join(&path);
            let mut bytes = std::fs::read(&full).map_err(|e| {
                Exit::invalid(format!(
                    "{}: cannot read {}: {e}",
                    file.display(),
                    full.display()
                ))
            })?;
            // A module is checked (and a `.wat` compiled) here, not by every attempt to run it.
            if modules.contains(&path) {
                bytes = wasm_binary(&full.display().to_string(), bytes)
                    .with_context(|| file.display().to_string())?
                    .0;
            }
            let digest = client::upload(&mut operator, bytes, true).await?;
            uploaded.insert(path.display().to_string(), digest.to_string());
        }
    }
    let request = v1::SubmitJobsRequest {
        source,
        format: format.name().into(),
        file: file.display().to_string(),
        uploaded,
    };
    let mut client = client::jobs(masters).await?;
    let (doing, answer) = match call {
        SpecCall::Submit => ("submitting the jobs", client.submit_jobs(request).await),
        SpecCall::Update => ("updating the services", client.update_jobs(request).await),
    };
    Ok(answer
        .map_err(|s| client::refused(doing, &s))?
        .into_inner()
        .jobs)
}

pub(super) async fn list(args: ListArgs) -> anyhow::Result<u8> {
    let mut jobs = client::jobs(&args.master.master).await?;
    let listed = jobs
        .list_jobs(v1::ListJobsRequest {})
        .await
        .map_err(|s| client::refused("listing jobs", &s))?
        .into_inner()
        .jobs;
    print_jobs(args.output, &listed, "no jobs")?;
    Ok(0)
}

pub(super) async fn status(args: JobNameArgs) -> anyhow::Result<u8> {
    let mut jobs = client::jobs(&args.master.master).await?;
    let job = get_job(&mut jobs, &args.name).await?;
    print_job(args.output, &job)?;
    Ok(0)
}

pub(super) async fn kill(args: JobNameArgs) -> anyhow::Result<u8> {
    let mut jobs = client::jobs(&args.master.master).await?;
    let job = jobs
        .kill_job(v1::KillJobRequest {
            name: args.name.clone(),
        })
        .await
        .map_err(|s| client::refused(&format!("killing job {}", args.name), &s))?
        .into_inner()
        .job
        .unwrap_or_default();
    print_job(args.output, &job)?;
    Ok(0)
}

/// What `run-now`, `suspend` and `resume` ask of a cron job.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CronCall {
    RunNow,
    Suspend,
    Resume,
}

pub(super) async fn cron_call(args: JobNameArgs, call: CronCall) -> anyhow::Result<u8> {
    let mut jobs = client::jobs(&args.master.master).await?;
    let request = v1::JobNameRequest {
        name: args.name.clone(),
    };
    let (doing, answer) = match call {
        CronCall::RunNow => ("starting a run of", jobs.run_job_now(request).await),
        CronCall::Suspend => ("suspending", jobs.suspend_job(request).await),
        CronCall::Resume => ("resuming", jobs.resume_job(request).await),
    };
    let job = answer
        .map_err(|s| client::refused(&format!("{doing} job {}", args.name), &s))?
        .into_inner();
    print_job(args.output, &job)?;
    Ok(0)
}

pub(super) async fn scale(args: JobScaleArgs) -> anyhow::Result<u8> {
    let mut jobs = client::jobs(&args.master.master).await?;
    let job = jobs
        .scale_job(v1::ScaleJobRequest {
            name: args.name.clone(),
            instances: args.instances,
        })
        .await
        .map_err(|s| client::refused(&format!("scaling job {}", args.name), &s))?
        .into_inner();
    print_job(args.output, &job)?;
    Ok(0)
}

pub(super) async fn logs(args: JobLogsArgs) -> anyhow::Result<u8> {
    let mut jobs = client::jobs(&args.master.master).await?;
    let job = get_job(&mut jobs, &args.name).await?;
    let task = if job.kind == "cron" {
        let latest = runs_of(&mut jobs, &args.name)
            .await?
            .into_iter()
            .max_by_key(|run| run.submitted_unix_millis)
            .ok_or_else(|| Exit::invalid(format!("cron job {} has no run yet", args.name)))?;
        format!("{}.0", latest.name)
    } else if args.instance < job.instances {
        // An updated service's instances run its latest version (`<job>.<index>.v<version>`).
        if job.version > 1 {
            format!("{}.{}.v{}", args.name, args.instance, job.version)
        } else {
            format!("{}.{}", args.name, args.instance)
        }
    } else {
        return Err(Exit::invalid(format!(
            "job {} has {} instances (0 to {})",
            args.name,
            job.instances,
            job.instances.saturating_sub(1)
        ))
        .into());
    };
    super::logs::run(LogsArgs {
        master: args.master,
        task,
        stderr: args.stderr,
        follow: args.follow,
        tail: args.tail,
        framework: Some(corral_frameworks::jobs::FRAMEWORK_ID.to_owned()),
    })
    .await
}

async fn get_job(jobs: &mut JobsClient, name: &str) -> anyhow::Result<v1::Job> {
    Ok(jobs
        .get_job(v1::GetJobRequest {
            name: name.to_owned(),
        })
        .await
        .map_err(|s| client::refused(&format!("job {name}"), &s))?
        .into_inner())
}

/// The runs of cron job `name`, in submission order.
async fn runs_of(jobs: &mut JobsClient, name: &str) -> anyhow::Result<Vec<v1::Job>> {
    Ok(jobs
        .list_jobs(v1::ListJobsRequest {})
        .await
        .map_err(|s| client::refused("listing jobs", &s))?
        .into_inner()
        .jobs
        .into_iter()
        .filter(|j| j.cron_job == name)
        .collect())
}

pub(super) async fn history(args: JobNameArgs) -> anyhow::Result<u8> {
    let mut jobs = client::jobs(&args.master.master).await?;
    let job = get_job(&mut jobs, &args.name).await?;
    if job.kind != "cron" {
        return Err(Exit::invalid(format!(
            "job {} is a {} job: history lists a cron job's runs (corral job status {} shows its latest failed attempts)",
            args.name, job.kind, args.name
        ))
        .into());
    }
    let runs = runs_of(&mut jobs, &args.name).await?;
    print_jobs(args.output, &runs, "no runs yet")?;
    Ok(0)
}

/// The local modules the jobs name, as written.
fn local_modules(jobs: &[JobSpec]) -> BTreeSet<PathBuf> {
    jobs.iter()
        .filter_map(|job| match &job.module {
            ModuleRef::Path(path) => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// The local files the jobs name (modules and `file` inputs), as written.
fn local_files(jobs: &[JobSpec]) -> BTreeSet<PathBuf> {
    let mut files = local_modules(jobs);
    for job in jobs {
        for input in &job.inputs {
            if let InputSource::File(path) = &input.source {
                files.insert(path.clone());
            }
        }
    }
    files
}

/// Waits until every job named has ended (a service: runs every instance), with a progress
/// bar per job (on a terminal); returns them as they ended.
pub(crate) async fn wait(
    client: &mut JobsClient,
    names: &[String],
) -> anyhow::Result<Vec<v1::Job>> {
    wait_until(client, names, settled).await
}

/// [`wait`] until `done` says so of every job.
async fn wait_until(
    client: &mut JobsClient,
    names: &[String],
    done: fn(&v1::Job) -> bool,
) -> anyhow::Result<Vec<v1::Job>> {
    let bars = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr());
    let style =
        indicatif::ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
    let progress: Vec<indicatif::ProgressBar> = names
        .iter()
        .map(|name| {
            let bar = bars.add(indicatif::ProgressBar::new(0));
            bar.set_style(style.clone());
            bar.set_prefix(name.clone());
            bar
        })
        .collect();
    loop {
        let mut jobs = Vec::with_capacity(names.len());
        for (name, bar) in names.iter().zip(&progress) {
            let job = get_job(client, name).await?;
            bar.set_length(job.instances);
            bar.set_position(if !job.rollout.is_empty() {
                job.instances.saturating_sub(job.outdated)
            } else if job.kind == "service" {
                job.started
            } else {
                job.succeeded + job.failed
            });
            bar.set_message(progress_line(&job));
            jobs.push(job);
        }
        if jobs.iter().all(done) {
            for bar in &progress {
                bar.finish();
            }
            return Ok(jobs);
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// Whether `submit --wait` is done with a job: it ended; or it is a service with every
/// instance reporting RUNNING, or a cron job (whose runs come on their schedule).
fn settled(job: &v1::Job) -> bool {
    let running = job.state == v1::JobState::Running as i32;
    job.ended_unix_millis != 0
        || job.kind == "cron"
        || (job.kind == "service" && running && job.started == job.instances)
}

/// `done 10 · running 4 · failed 1 · retrying 2`, then the job's state or message.
fn progress_line(job: &v1::Job) -> String {
    let mut line = format!(
        "done {} · running {} · failed {} · retrying {}",
        job.succeeded, job.running, job.failed, job.retrying
    );
    let state = corral_proto::json::job_state(job.state);
    if job.ended_unix_millis != 0 || job.state == v1::JobState::Waiting as i32 {
        line.push_str(&format!(" · {state}"));
    }
    if !job.rollout.is_empty() {
        line.push_str(&format!(" · {}", job.rollout));
    }
    if !job.message.is_empty() {
        line.push_str(&format!(" ({})", job.message));
    }
    line
}

/// Prints jobs; `none` says there are none.
fn print_jobs(format: OutputFormat, jobs: &[v1::Job], none: &str) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json | OutputFormat::Yaml => output::print_doc(
            format,
            &json!({ "jobs": jobs.iter().map(corral_proto::json::job).collect::<Vec<_>>() }),
        ),
        OutputFormat::Table | OutputFormat::Wide => {
            let wide = format == OutputFormat::Wide;
            let mut header = vec![
                "JOB",
                "KIND",
                "STATE",
                "DONE",
                "RUNNING",
                "FAILED",
                "RETRYING",
                "SUBMITTED",
            ];
            if wide {
                header.extend(["OWNER", "ATTEMPTS", "VERSION", "DEPENDS ON", "MESSAGE"]);
            }
            let mut table = output::table(&header);
            for j in jobs {
                let mut row = vec![
                    j.name.clone(),
                    j.kind.clone(),
                    corral_proto::json::job_state(j.state),
                    format!("{}/{}", j.succeeded, j.instances),
                    j.running.to_string(),
                    j.failed.to_string(),
                    j.retrying.to_string(),
                    output::ago(j.submitted_unix_millis),
                ];
                if wide {
                    row.extend([
                        j.owner.clone(),
                        j.attempts.to_string(),
                        j.version.to_string(),
                        j.depends_on.join(","),
                        j.message.clone(),
                    ]);
                }
                table.add_row(row);
            }
            output::print_listing(&table, none);
            Ok(())
        }
    }
}

fn print_job(format: OutputFormat, j: &v1::Job) -> anyhow::Result<()> {
    if matches!(format, OutputFormat::Json | OutputFormat::Yaml) {
        return output::print_doc(format, &corral_proto::json::job(j));
    }
    println!("job        {} ({})", j.name, j.kind);
    println!("state      {}", corral_proto::json::job_state(j.state));
    if !j.owner.is_empty() {
        println!("owner      {}", j.owner);
    }
    if !j.message.is_empty() {
        println!("message    {}", j.message);
    }
    println!(
        "instances  {} (succeeded {}, failed {}, running {}, waiting {}, retrying {})",
        j.instances, j.succeeded, j.failed, j.running, j.waiting, j.retrying
    );
    println!("attempts   {}", j.attempts);
    if j.version > 1 {
        println!("version    {}", j.version);
    }
    if !j.rollout.is_empty() {
        println!("update     {} ({} old tasks left)", j.rollout, j.outdated);
    }
    if !j.schedule.is_empty() {
        println!("schedule   {}", j.schedule);
    }
    if j.next_run_unix_millis != 0 {
        println!("next run   {}", output::at(j.next_run_unix_millis));
    }
    if !j.cron_job.is_empty() {
        println!("run of     {}", j.cron_job);
    }
    if !j.depends_on.is_empty() {
        println!("after      {}", j.depends_on.join(", "));
    }
    println!("submitted  {}", output::ago(j.submitted_unix_millis));
    if j.ended_unix_millis != 0 {
        println!("ended      {}", output::ago(j.ended_unix_millis));
    }
    if !j.recent_failures.is_empty() {
        let mut table = output::table(&["INSTANCE", "ATTEMPT", "STATE", "MESSAGE"]);
        for f in &j.recent_failures {
            table.add_row(vec![
                f.instance.to_string(),
                f.attempt.to_string(),
                f.state.clone(),
                f.message.clone(),
            ]);
        }
        println!("recent failures:\n{table}");
    }
    Ok(())
}

pub(super) fn validate(args: &JobValidateArgs) -> anyhow::Result<u8> {
    let (_, _, jobs) = read_spec(&args.file, args.format.as_deref())?;
    let file = args.file.display();
    let count = jobs.len();
    println!(
        "{file}: valid, {count} {}",
        if count == 1 { "job" } else { "jobs" }
    );
    for job in &jobs {
        println!("  {}", describe(job));
    }
    Ok(0)
}

/// A spec file's format, text and jobs, or every problem it has (exit 2).
pub(crate) fn read_spec(
    path: &Path,
    format: Option<&str>,
) -> anyhow::Result<(Format, String, Vec<JobSpec>)> {
    let format = match format {
        Some(name) => Format::from_name(name).map_err(Exit::invalid)?,
        None => Format::from_path(path).ok_or_else(|| {
            Exit::invalid(format!(
                "{}: cannot tell the format from the extension (.toml, .yaml, .yml, .json); \
                 pass --format",
                path.display()
            ))
        })?,
    };
    let source = std::fs::read_to_string(path)
        .map_err(|e| Exit::invalid(format!("cannot read {}: {e}", path.display())))?;
    let jobs = spec::parse(&source, format, &path.display().to_string())
        .map_err(|errors| Exit::invalid(errors.to_string()))?;
    Ok((format, source, jobs))
}

/// One line about a job: name, kind and what the kind says.
fn describe(job: &JobSpec) -> String {
    let what = match &job.kind {
        JobKind::Batch(b) => format!(
            "batch, {} instances, {} retries{}",
            b.instances,
            b.retries,
            if b.depends_on.is_empty() {
                String::new()
            } else {
                format!(", after {}", b.depends_on.join(", "))
            }
        ),
        JobKind::Service(s) => format!("service, {} instances", s.instances),
        JobKind::Cron(c) => match &c.schedule {
            Schedule::Cron(expr) => format!("cron, \"{expr}\" in {}", c.timezone),
            Schedule::Every { start, every, .. } => {
                format!("cron, every {every:?} from {start}")
            }
        },
    };
    format!("{}: {what}", job.name)
}
