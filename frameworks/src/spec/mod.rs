//! The job spec, version 1: what `corral job submit` takes, in TOML, YAML or JSON.
//!
//! ```toml
//! version = 1
//! name = "hello-batch"
//! kind = "batch"            # batch | service | cron
//! module = "hello.wasm"     # path, sha256:<hex> or URL
//! instances = 200
//! [resources]
//! cpus = 0.1
//! mem = "32MiB"
//! ```
//!
//! [`parse`] checks everything a spec says before anything is submitted, and reports every
//! problem with its line and column ([`SpecError`]): syntax, unknown fields (with the closest
//! known one), wrong types, values out of range, cron expressions, time zones, regular
//! expressions, `depends_on` naming itself. Fields are documented on the types below.

mod node;
mod read;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_types::quantity::parse_cpus_milli;
use corral_types::{Digest, Resources, Role};

use node::Node;
pub use node::Pos;
use read::{Fields, Reader};

/// The spec format a file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    /// The format a file name's extension says (`.toml`, `.yaml`/`.yml`, `.json`).
    #[must_use]
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    /// Its name: `toml`, `yaml` or `json`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Toml => "toml",
            Self::Yaml => "yaml",
            Self::Json => "json",
        }
    }

    /// `toml`, `yaml` or `json`.
    ///
    /// # Errors
    ///
    /// Another name.
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "toml" => Ok(Self::Toml),
            "yaml" | "yml" => Ok(Self::Yaml),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown spec format {other:?} (toml, yaml or json)"
            )),
        }
    }
}

/// One problem of a spec: where, which field, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub pos: Pos,
    /// The field's path (`resources.mem`, `constraints[1]`); empty for a syntax error.
    pub path: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.pos, self.message)
        } else {
            write!(f, "{}: {}: {}", self.pos, self.path, self.message)
        }
    }
}

/// Every problem of a spec, in document order, each prefixed with the file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors {
    pub file: String,
    pub errors: Vec<SpecError>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{e}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// The versions of the spec this build reads.
pub const SPEC_VERSION: u64 = 1;

/// A job, as its spec describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Unique among jobs; a DNS label (lowercase letters, digits and `-`, at most 63).
    pub name: String,
    pub module: ModuleRef,
    /// The arguments after argv[0].
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub inputs: Vec<InputSpec>,
    /// `cpus` is required; `mem` and `disk` default to 64 MiB.
    pub resources: Resources,
    pub limits: LimitsSpec,
    /// The role its tasks are placed in; the framework's by default.
    pub role: Option<Role>,
    pub labels: Vec<(String, String)>,
    pub constraints: Vec<Constraint>,
    pub placement: Placement,
    pub tier: Tier,
    pub kind: JobKind,
}

/// Where the module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleRef {
    /// A local file, uploaded on submit; relative to the spec's directory.
    Path(PathBuf),
    /// In the master's artifact store.
    Digest(Digest),
    /// At an http(s) URL, optionally pinned to a digest (`module = { url = ..., digest = ... }`).
    Url { url: String, digest: Option<Digest> },
}

/// A file placed in each instance's sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// Where, relative to the sandbox root.
    pub path: String,
    pub source: InputSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// A local file, shipped on submit (`file = "data.csv"`).
    File(PathBuf),
    /// An artifact of the master's store (`artifact = "sha256:..."`).
    Artifact(Digest),
    /// The outputs of a job this one depends on (`from = "map"`, optionally `output =
    /// "counts.txt"` for one file of each instance's outputs).
    Job { job: String, output: Option<String> },
}

/// Limits beyond resources (see `TaskLimits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsSpec {
    pub max_fuel: Option<u64>,
    /// Per instance.
    pub timeout: Option<Duration>,
    pub max_output: Option<u64>,
}

/// A placement constraint, as Marathon's: `[field, operator, value]` on `hostname` or any
/// agent attribute.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub field: String,
    pub operator: Operator,
}

impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.operator.to_string() == other.operator.to_string()
    }
}

#[derive(Debug, Clone)]
pub enum Operator {
    /// Each instance on a distinct value.
    Unique,
    /// Every instance on this value.
    Cluster(String),
    /// Spread evenly over the field's values (at least this many of them).
    GroupBy(Option<u64>),
    /// Only where the value matches (the whole value).
    Like(regex::Regex),
    /// Only where the value does not match.
    Unlike(regex::Regex),
    /// At most this many instances per value.
    MaxPer(u64),
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unique => f.write_str("UNIQUE"),
            Self::Cluster(v) => write!(f, "CLUSTER {v}"),
            Self::GroupBy(None) => f.write_str("GROUP_BY"),
            Self::GroupBy(Some(n)) => write!(f, "GROUP_BY {n}"),
            Self::Like(r) => write!(f, "LIKE {r}"),
            Self::Unlike(r) => write!(f, "UNLIKE {r}"),
            Self::MaxPer(n) => write!(f, "MAX_PER {n}"),
        }
    }
}

/// How instances are spread over agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// Fill agents before using more (the default).
    #[default]
    BinPack,
    /// Use as many agents as possible.
    Spread,
}

/// Aurora's tiers: production work may take the place of preemptible work of its role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tier {
    #[default]
    Production,
    Preemptible,
}

/// What kind of job, and what only that kind has.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    Batch(BatchSpec),
    Service(ServiceSpec),
    Cron(CronSpec),
}

/// Runs `instances` to completion.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpec {
    /// 1 to [`MAX_INSTANCES`]; each gets its index in `CORRAL_TASK_INDEX`.
    pub instances: u64,
    /// Attempts after the first, per instance (default 3).
    pub retries: u64,
    pub backoff: Backoff,
    /// Stop the job once this many instances have failed for good (default: never stop
    /// early).
    pub max_failures: Option<u64>,
    /// Jobs that must succeed first (Chronos's parents).
    pub depends_on: Vec<String>,
}

/// Keeps `instances` running.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub instances: u64,
    /// Marathon's defaults: 1 s, growing 1.15 times to at most 5 minutes.
    pub backoff: Backoff,
    pub update: UpdatePolicy,
}

/// A rolling update's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatePolicy {
    /// Instances that may be down at once (default 0).
    pub max_unavailable: u64,
    /// Instances started beyond `instances` at once (default 1).
    pub max_surge: u64,
}

/// Delay before a failed instance is retried: `initial`, times `factor` each time, at most
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
}

/// Runs on a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct CronSpec {
    pub schedule: Schedule,
    /// An IANA time zone name (default `UTC`).
    pub timezone: String,
    pub concurrency: Concurrency,
    /// A run that could not start within this of its time is skipped.
    pub starting_deadline: Option<Duration>,
    /// Finished runs kept in the history (default 10).
    pub history_limit: u64,
    pub suspended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A five-field cron expression (`*/5 * * * *`), as written.
    Cron(String),
    /// An ISO 8601 repeating interval (`R/2027-01-01T00:00:00Z/PT1H`, `R5/...`), as
    /// Chronos.
    Every {
        start: jiff::Timestamp,
        every: Duration,
        /// `None` repeats forever.
        repetitions: Option<u64>,
    },
}

impl fmt::Display for Schedule {
    /// As written in a spec: the cron expression, or `R[n]/<start>/<ISO 8601 duration>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cron(expr) => f.write_str(expr),
            Self::Every {
                start,
                every,
                repetitions,
            } => {
                f.write_str("R")?;
                if let Some(n) = repetitions {
                    write!(f, "{n}")?;
                }
                match jiff::SignedDuration::try_from(*every) {
                    Ok(d) => write!(f, "/{start}/{d}"),
                    Err(_) => write!(f, "/{start}/PT{}S", every.as_secs()),
                }
            }
        }
    }
}

/// What a due run does while the previous one still runs (Kubernetes's CronJob).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Concurrency {
    /// Start it anyway.
    #[default]
    Allow,
    /// Skip it.
    Forbid,
    /// Kill the running one and start it.
    Replace,
}

/// Most instances of one job.
pub const MAX_INSTANCES: u64 = 100_000;

const COMMON_FIELDS: &[&str] = &[
    "version",
    "name",
    "kind",
    "module",
    "args",
    "env",
    "inputs",
    "resources",
    "limits",
    "role",
    "labels",
    "constraints",
    "placement",
    "tier",
];
const BATCH_FIELDS: &[&str] = &[
    "instances",
    "retries",
    "backoff",
    "max_failures",
    "depends_on",
];
const SERVICE_FIELDS: &[&str] = &["instances", "backoff", "update"];
const CRON_FIELDS: &[&str] = &[
    "schedule",
    "timezone",
    "concurrency",
    "starting_deadline",
    "history_limit",
    "suspended",
];

/// Reads a spec file written in `format`: one job (its fields at the top), or several (`version`
/// at the top and a list `jobs` of tables, as `[[jobs]]` in TOML), such as a pipeline whose
/// jobs depend on each other. `file` names it in errors.
///
/// # Errors
///
/// Every problem found, each with its line and column.
pub fn parse(source: &str, format: Format, file: &str) -> Result<Vec<JobSpec>, SpecErrors> {
    let fail = |errors| SpecErrors {
        file: file.to_owned(),
        errors,
    };
    let root = node::load(source, format).map_err(|e| fail(vec![e]))?;
    let mut r = Reader::default();
    let jobs = read_file(&mut r, &root);
    if r.errors.is_empty() {
        return Ok(jobs);
    }
    let mut errors = r.errors;
    errors.sort_by_key(|e| (e.pos.line, e.pos.column));
    errors.dedup();
    Err(fail(errors))
}

fn read_file(r: &mut Reader, root: &Node) -> Vec<JobSpec> {
    let Some(mut top) = r.table(root, "") else {
        return Vec::new();
    };
    let Some(list) = top.take("jobs") else {
        return read_job(r, root).into_iter().collect();
    };
    version(r, &mut top);
    top.finish(r, &["version", "jobs"]);
    let mut jobs = Vec::new();
    for (i, node) in r.list(list, "jobs").unwrap_or_default().iter().enumerate() {
        r.prefix = format!("jobs[{i}].");
        if let Some(mut f) = r.table(node, "") {
            if f.take("version").is_some() {
                r.error(
                    f.pos_of("version"),
                    "version",
                    "`version` goes at the top of the file",
                );
            }
            if let Some(job) = read_fields(r, f) {
                jobs.push(job);
            }
        }
    }
    r.prefix.clear();
    check_graph(r, &jobs, list.pos);
    jobs
}

/// Names are unique in a file and its jobs' `depends_on` form no cycle.
fn check_graph(r: &mut Reader, jobs: &[JobSpec], pos: Pos) {
    let mut seen = std::collections::HashSet::new();
    for job in jobs {
        if !seen.insert(job.name.as_str()) {
            r.error(pos, "jobs", format!("two jobs are named {:?}", job.name));
        }
    }
    let depends = |name: &str| -> &[String] {
        jobs.iter()
            .find(|j| j.name == name)
            .and_then(|j| match &j.kind {
                JobKind::Batch(b) => Some(b.depends_on.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    };
    // A depth-first walk from each job; a job met again on the current path closes a cycle.
    fn walk<'a>(
        name: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::HashSet<&'a str>,
        depends: &dyn Fn(&str) -> &'a [String],
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|n| *n == name) {
            let mut cycle = path[at..].to_vec();
            cycle.push(name);
            return Some(cycle);
        }
        if !done.insert(name) {
            return None;
        }
        path.push(name);
        for next in depends(name) {
            if let Some(cycle) = walk(next, path, done, depends) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::HashSet::new();
    for job in jobs {
        if let Some(cycle) = walk(&job.name, &mut Vec::new(), &mut done, &depends) {
            r.error(
                pos,
                "jobs",
                format!("`depends_on` forms a cycle: {}", cycle.join(" -> ")),
            );
            return;
        }
    }
}

fn version(r: &mut Reader, f: &mut Fields<'_>) {
    match f.take("version") {
        None => r.error(
            f.pos,
            "version",
            format!("required: `version = {SPEC_VERSION}`"),
        ),
        Some(v) => {
            if let Some(n) = r.integer(v, "version", 0..=u64::MAX)
                && n != SPEC_VERSION
            {
                r.error(
                    v.pos,
                    "version",
                    format!(
                        "version {n} is not supported (this corral reads version {SPEC_VERSION})"
                    ),
                );
            }
        }
    }
}

fn read_job(r: &mut Reader, root: &Node) -> Option<JobSpec> {
    let mut f = r.table(root, "")?;
    version(r, &mut f);
    read_fields(r, f)
}

fn read_fields(r: &mut Reader, mut f: Fields<'_>) -> Option<JobSpec> {
    let name = required(r, &mut f, "name").and_then(|n| job_name(r, n, "name"));
    let kind_name = required(r, &mut f, "kind").and_then(|k| {
        let kind = r.string(k, "kind")?;
        match kind.as_str() {
            "batch" | "service" | "cron" => Some(kind),
            other => {
                r.error(
                    k.pos,
                    "kind",
                    format!("{other:?} is not a kind (batch, service or cron)"),
                );
                None
            }
        }
    });
    let module = required(r, &mut f, "module").and_then(|m| module(r, m));
    let args = f
        .take("args")
        .map(|a| r.strings(a, "args"))
        .unwrap_or_default();
    let env = f
        .take("env")
        .map(|e| r.string_map(e, "env"))
        .unwrap_or_default();
    let inputs = f.take("inputs").map(|i| inputs(r, i)).unwrap_or_default();
    let resources = resources(r, &mut f);
    let limits = f.take("limits").map(|l| limits(r, l)).unwrap_or_default();
    let role = f.take("role").and_then(|node| {
        let text = r.string(node, "role")?;
        Role::new(&text)
            .map_err(|e| r.error(node.pos, "role", e.to_string()))
            .ok()
    });
    let labels = f
        .take("labels")
        .map(|l| r.string_map(l, "labels"))
        .unwrap_or_default();
    let constraints = f
        .take("constraints")
        .map(|c| constraints(r, c))
        .unwrap_or_default();
    let placement = choice(
        r,
        &mut f,
        "placement",
        &[
            ("binpack", Placement::BinPack),
            ("spread", Placement::Spread),
        ],
    );
    let tier = choice(
        r,
        &mut f,
        "tier",
        &[
            ("production", Tier::Production),
            ("preemptible", Tier::Preemptible),
        ],
    );
    let kind = match kind_name.as_deref() {
        Some("batch") => Some(JobKind::Batch(batch(r, &mut f, name.as_deref()))),
        Some("service") => Some(JobKind::Service(service(r, &mut f))),
        Some("cron") => cron(r, &mut f).map(JobKind::Cron),
        _ => None,
    };
    // Fields of another kind are named as such, the rest as unknown.
    let mut known: Vec<&str> = COMMON_FIELDS.to_vec();
    let own: &[&str] = match kind_name.as_deref() {
        Some("batch") => BATCH_FIELDS,
        Some("service") => SERVICE_FIELDS,
        Some("cron") => CRON_FIELDS,
        _ => &[],
    };
    known.extend(own);
    for (field, kinds) in [
        ("instances", "batch and service"),
        ("backoff", "batch and service"),
        ("retries", "batch"),
        ("max_failures", "batch"),
        ("depends_on", "batch"),
        ("update", "service"),
        ("schedule", "cron"),
        ("timezone", "cron"),
        ("concurrency", "cron"),
        ("starting_deadline", "cron"),
        ("history_limit", "cron"),
        ("suspended", "cron"),
    ] {
        if kind_name.is_some() && !own.contains(&field) && f.take(field).is_some() {
            r.error(
                f.pos_of(field),
                field,
                format!("`{field}` applies to {kinds} jobs only"),
            );
        }
    }
    if let Some(JobKind::Batch(batch)) = &kind {
        for input in &inputs {
            if let InputSource::Job { job, .. } = &input.source
                && !batch.depends_on.contains(job)
            {
                r.error(
                    f.pos_of("inputs"),
                    "inputs",
                    format!("input from job {job:?}, which is not in `depends_on`"),
                );
            }
        }
    } else if inputs
        .iter()
        .any(|i| matches!(i.source, InputSource::Job { .. }))
    {
        r.error(
            f.pos_of("inputs"),
            "inputs",
            "inputs from other jobs need `depends_on`: batch jobs only",
        );
    }
    f.finish(r, &known);
    Some(JobSpec {
        name: name?,
        module: module?,
        args,
        env,
        inputs,
        resources: resources?,
        limits,
        role,
        labels,
        constraints,
        placement,
        tier,
        kind: kind?,
    })
}

fn required<'a>(r: &mut Reader, f: &mut Fields<'a>, name: &str) -> Option<&'a Node> {
    let node = f.take(name);
    if node.is_none() {
        r.error(f.pos, &f.child(name), "required field is missing");
    }
    node
}

/// A job name: a DNS label.
fn job_name(r: &mut Reader, node: &Node, path: &str) -> Option<String> {
    let name = r.string(node, path)?;
    let valid = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Some(name)
    } else {
        r.error(
            node.pos,
            path,
            format!("{name:?} is not a job name (lowercase letters, digits and `-`, starting with a letter, at most 63)"),
        );
        None
    }
}

fn digest(r: &mut Reader, node: &Node, path: &str) -> Option<Digest> {
    let text = r.string(node, path)?;
    text.parse()
        .map_err(|e| r.error(node.pos, path, format!("{text:?}: {e}")))
        .ok()
}

fn module(r: &mut Reader, node: &Node) -> Option<ModuleRef> {
    if let Some(mut f) = matches!(node.value, node::Value::Map(_))
        .then(|| r.table(node, "module"))
        .flatten()
    {
        let url = required(r, &mut f, "url").and_then(|u| url(r, u, "module.url"));
        let pinned = f.take("digest").and_then(|d| digest(r, d, "module.digest"));
        f.finish(r, &["url", "digest"]);
        return Some(ModuleRef::Url {
            url: url?,
            digest: pinned,
        });
    }
    let text = r.string(node, "module")?;
    if text.starts_with("sha256:") {
        return digest(r, node, "module").map(ModuleRef::Digest);
    }
    if text.contains("://") {
        return url(r, node, "module").map(|url| ModuleRef::Url { url, digest: None });
    }
    Some(ModuleRef::Path(PathBuf::from(text)))
}

fn url(r: &mut Reader, node: &Node, path: &str) -> Option<String> {
    let text = r.string(node, path)?;
    if text.starts_with("http://") || text.starts_with("https://") {
        Some(text)
    } else {
        r.error(node.pos, path, format!("{text:?} is not an http(s) URL"));
        None
    }
}

fn inputs(r: &mut Reader, node: &Node) -> Vec<InputSpec> {
    let items = r.list(node, "inputs").unwrap_or_default();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("inputs[{i}]");
        let Some(mut f) = r.table(item, &path) else {
            continue;
        };
        let target = required(r, &mut f, "path").and_then(|p| r.string(p, &f.child("path")));
        let file = f.take("file");
        let artifact = f.take("artifact");
        let from = f.take("from");
        let output = f.take("output");
        let source = match (file, artifact, from) {
            (Some(file), None, None) => r
                .string(file, &f.child("file"))
                .map(|p| InputSource::File(p.into())),
            (None, Some(a), None) => digest(r, a, &f.child("artifact")).map(InputSource::Artifact),
            (None, None, Some(job)) => {
                job_name(r, job, &f.child("from")).map(|job| InputSource::Job {
                    job,
                    output: output.and_then(|o| r.string(o, &f.child("output"))),
                })
            }
            _ => {
                r.error(
                    item.pos,
                    &path,
                    "exactly one of `file`, `artifact` or `from`",
                );
                None
            }
        };
        if output.is_some() && from.is_none() {
            r.error(
                f.pos_of("output"),
                &f.child("output"),
                "`output` goes with `from`",
            );
        }
        f.finish(r, &["path", "file", "artifact", "from", "output"]);
        if let (Some(path), Some(source)) = (target, source) {
            out.push(InputSpec { path, source });
        }
    }
    out
}

/// Default `mem` and `disk`, as `corral run`'s.
const DEFAULT_SIZE: u64 = 64 << 20;

fn resources(r: &mut Reader, f: &mut Fields<'_>) -> Option<Resources> {
    let node = required(r, f, "resources")?;
    let mut t = r.table(node, "resources")?;
    let cpus = required(r, &mut t, "cpus").and_then(|c| {
        let text = match &c.value {
            node::Value::Plain(s) => s.clone(),
            _ => {
                r.error(
                    c.pos,
                    "resources.cpus",
                    format!("expected a number of CPUs, found {}", c.describe()),
                );
                return None;
            }
        };
        match parse_cpus_milli(&text) {
            Ok(0) => {
                r.error(
                    c.pos,
                    "resources.cpus",
                    "a task needs some CPU (at least 0.001)",
                );
                None
            }
            Ok(milli) => Some(milli),
            Err(e) => {
                r.error(c.pos, "resources.cpus", e);
                None
            }
        }
    });
    let mem = t
        .take("mem")
        .map_or(Some(DEFAULT_SIZE), |m| r.size(m, "resources.mem"));
    let disk = t
        .take("disk")
        .map_or(Some(DEFAULT_SIZE), |d| r.size(d, "resources.disk"));
    t.finish(r, &["cpus", "mem", "disk"]);
    Some(
        Resources::new()
            .with_cpus_milli(cpus?)
            .with_mem_bytes(mem?)
            .with_disk_bytes(disk?),
    )
}

fn limits(r: &mut Reader, node: &Node) -> LimitsSpec {
    let Some(mut f) = r.table(node, "limits") else {
        return LimitsSpec::default();
    };
    let spec = LimitsSpec {
        max_fuel: f
            .take("max_fuel")
            .and_then(|n| r.integer(n, "limits.max_fuel", 1..=u64::MAX)),
        timeout: f
            .take("timeout")
            .and_then(|n| r.duration(n, "limits.timeout")),
        max_output: f
            .take("max_output")
            .and_then(|n| r.size(n, "limits.max_output")),
    };
    f.finish(r, &["max_fuel", "timeout", "max_output"]);
    spec
}

fn constraints(r: &mut Reader, node: &Node) -> Vec<Constraint> {
    let items = r.list(node, "constraints").unwrap_or_default();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("constraints[{i}]");
        let Some(parts) = r.list(item, &path) else {
            continue;
        };
        let words: Vec<(String, Pos)> = parts
            .iter()
            .filter_map(|p| r.string(p, &path).map(|s| (s, p.pos)))
            .collect();
        if words.len() != parts.len() {
            continue;
        }
        let operator = match words.as_slice() {
            [_, (op, pos)] => match op.as_str() {
                "UNIQUE" => Some(Operator::Unique),
                "GROUP_BY" => Some(Operator::GroupBy(None)),
                "CLUSTER" | "LIKE" | "UNLIKE" | "MAX_PER" => {
                    r.error(
                        *pos,
                        &path,
                        format!("{op} needs a value: [field, \"{op}\", value]"),
                    );
                    None
                }
                other => {
                    unknown_operator(r, *pos, &path, other);
                    None
                }
            },
            [_, (op, pos), (value, value_pos)] => match op.as_str() {
                "CLUSTER" => Some(Operator::Cluster(value.clone())),
                "LIKE" | "UNLIKE" => match regex::Regex::new(&format!("^(?:{value})$")) {
                    Ok(re) if op == "LIKE" => Some(Operator::Like(re)),
                    Ok(re) => Some(Operator::Unlike(re)),
                    Err(e) => {
                        // The error's last line says what is wrong; the others draw it.
                        let text = e.to_string();
                        let why = text.lines().last().unwrap_or_default();
                        let why = why.trim_start_matches("error: ");
                        r.error(
                            *value_pos,
                            &path,
                            format!("{value:?} is not a regular expression ({why})"),
                        );
                        None
                    }
                },
                "GROUP_BY" | "MAX_PER" => match value.parse::<u64>() {
                    Ok(n) if n >= 1 && op == "MAX_PER" => Some(Operator::MaxPer(n)),
                    Ok(n) if n >= 1 => Some(Operator::GroupBy(Some(n))),
                    _ => {
                        r.error(
                            *value_pos,
                            &path,
                            format!("{op} takes a count of at least 1, not {value:?}"),
                        );
                        None
                    }
                },
                "UNIQUE" => {
                    r.error(*value_pos, &path, "UNIQUE takes no value");
                    None
                }
                other => {
                    unknown_operator(r, *pos, &path, other);
                    None
                }
            },
            _ => {
                r.error(
                    item.pos,
                    &path,
                    "a constraint is [field, OPERATOR] or [field, OPERATOR, value]",
                );
                None
            }
        };
        if let (Some(operator), Some((field, _))) = (operator, words.first()) {
            out.push(Constraint {
                field: field.clone(),
                operator,
            });
        }
    }
    out
}

fn unknown_operator(r: &mut Reader, pos: Pos, path: &str, op: &str) {
    r.error(
        pos,
        path,
        format!("unknown operator {op:?} (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER)"),
    );
}

/// An optional field naming one of `choices` (the first is the default).
fn choice<T: Copy>(r: &mut Reader, f: &mut Fields<'_>, name: &str, choices: &[(&str, T)]) -> T {
    let default = choices[0].1;
    let Some(node) = f.take(name) else {
        return default;
    };
    let Some(text) = r.string(node, name) else {
        return default;
    };
    if let Some((_, value)) = choices.iter().find(|(n, _)| *n == text) {
        return *value;
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    r.error(
        node.pos,
        name,
        format!("{text:?} is not one of {}", names.join(", ")),
    );
    default
}

fn backoff(r: &mut Reader, f: &mut Fields<'_>, default: Backoff) -> Backoff {
    let Some(node) = f.take("backoff") else {
        return default;
    };
    let Some(mut t) = r.table(node, "backoff") else {
        return default;
    };
    let backoff = Backoff {
        initial: t
            .take("initial")
            .and_then(|n| r.duration(n, "backoff.initial"))
            .unwrap_or(default.initial),
        factor: t
            .take("factor")
            .and_then(|n| {
                let factor = r.float(n, "backoff.factor")?;
                if (1.0..=10.0).contains(&factor) {
                    Some(factor)
                } else {
                    r.error(
                        n.pos,
                        "backoff.factor",
                        format!("{factor} is out of range (1 to 10)"),
                    );
                    None
                }
            })
            .unwrap_or(default.factor),
        max: t
            .take("max")
            .and_then(|n| r.duration(n, "backoff.max"))
            .unwrap_or(default.max),
    };
    if backoff.max < backoff.initial {
        r.error(t.pos, "backoff", "`max` is below `initial`");
    }
    t.finish(r, &["initial", "factor", "max"]);
    backoff
}

fn instances(r: &mut Reader, f: &mut Fields<'_>) -> u64 {
    f.take("instances")
        .and_then(|n| r.integer(n, "instances", 1..=MAX_INSTANCES))
        .unwrap_or(1)
}

fn batch(r: &mut Reader, f: &mut Fields<'_>, name: Option<&str>) -> BatchSpec {
    let instances = instances(r, f);
    let retries = f
        .take("retries")
        .and_then(|n| r.integer(n, "retries", 0..=100))
        .unwrap_or(3);
    let backoff = backoff(
        r,
        f,
        Backoff {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(60),
        },
    );
    let max_failures = f
        .take("max_failures")
        .and_then(|n| r.integer(n, "max_failures", 1..=MAX_INSTANCES));
    let mut depends_on = Vec::new();
    if let Some(node) = f.take("depends_on") {
        for (i, item) in r
            .list(node, "depends_on")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = format!("depends_on[{i}]");
            let Some(job) = job_name(r, item, &path) else {
                continue;
            };
            if Some(job.as_str()) == name {
                r.error(item.pos, &path, "a job cannot depend on itself");
            } else if depends_on.contains(&job) {
                r.error(item.pos, &path, format!("{job:?} is named twice"));
            } else {
                depends_on.push(job);
            }
        }
    }
    BatchSpec {
        instances,
        retries,
        backoff,
        max_failures,
        depends_on,
    }
}

fn service(r: &mut Reader, f: &mut Fields<'_>) -> ServiceSpec {
    let instances = instances(r, f);
    let backoff = backoff(
        r,
        f,
        Backoff {
            initial: Duration::from_secs(1),
            factor: 1.15,
            max: Duration::from_secs(300),
        },
    );
    let mut update = UpdatePolicy {
        max_unavailable: 0,
        max_surge: 1,
    };
    if let Some(node) = f.take("update")
        && let Some(mut t) = r.table(node, "update")
    {
        if let Some(n) = t
            .take("max_unavailable")
            .and_then(|n| r.integer(n, "update.max_unavailable", 0..=MAX_INSTANCES))
        {
            update.max_unavailable = n;
        }
        if let Some(n) = t
            .take("max_surge")
            .and_then(|n| r.integer(n, "update.max_surge", 0..=MAX_INSTANCES))
        {
            update.max_surge = n;
        }
        if update.max_unavailable == 0 && update.max_surge == 0 {
            r.error(t.pos, "update", "`max_unavailable` and `max_surge` cannot both be 0: the update could never proceed");
        }
        t.finish(r, &["max_unavailable", "max_surge"]);
    }
    ServiceSpec {
        instances,
        backoff,
        update,
    }
}

fn cron(r: &mut Reader, f: &mut Fields<'_>) -> Option<CronSpec> {
    let schedule = required(r, f, "schedule").and_then(|node| {
        let text = r.string(node, "schedule")?;
        schedule(&text)
            .map_err(|e| r.error(node.pos, "schedule", e))
            .ok()
    });
    let timezone = match f.take("timezone") {
        None => Some("UTC".to_owned()),
        Some(node) => {
            r.string(node, "timezone")
                .and_then(|name| match jiff::tz::TimeZone::get(&name) {
                    Ok(_) => Some(name),
                    Err(_) => {
                        r.error(
                            node.pos,
                            "timezone",
                            format!("{name:?} is not a known time zone (e.g. Europe/Paris, UTC)"),
                        );
                        None
                    }
                })
        }
    };
    let concurrency = choice(
        r,
        f,
        "concurrency",
        &[
            ("allow", Concurrency::Allow),
            ("forbid", Concurrency::Forbid),
            ("replace", Concurrency::Replace),
        ],
    );
    let starting_deadline = f
        .take("starting_deadline")
        .and_then(|n| r.duration(n, "starting_deadline"));
    let history_limit = f
        .take("history_limit")
        .and_then(|n| r.integer(n, "history_limit", 0..=1000))
        .unwrap_or(10);
    let suspended = f
        .take("suspended")
        .and_then(|n| r.boolean(n, "suspended"))
        .unwrap_or(false);
    Some(CronSpec {
        schedule: schedule?,
        timezone: timezone?,
        concurrency,
        starting_deadline,
        history_limit,
        suspended,
    })
}

/// A cron expression (five fields) or an ISO 8601 repeating interval.
fn schedule(text: &str) -> Result<Schedule, String> {
    if let Some(rest) = text.strip_prefix('R') {
        return repeating_interval(text, rest);
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{text:?} is not a cron expression (five fields: minute hour day-of-month month day-of-week) nor an ISO 8601 interval (R/<start>/<duration>)"
        ));
    }
    cron_schedule(&fields).map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))?;
    Ok(Schedule::Cron(fields.join(" ")))
}

/// The five POSIX fields as a schedule (seconds 0, every year; days of the week by name, so
/// POSIX's 0-7 mean what they mean there).
pub(crate) fn cron_schedule(fields: &[&str]) -> Result<jiff_cron::Schedule, String> {
    let [minute, hour, day, month, weekday] = fields else {
        return Err("five fields are needed".into());
    };
    let weekday = posix_weekdays(weekday)?;
    format!("0 {minute} {hour} {day} {month} {weekday} *")
        .parse()
        .map_err(|e: jiff_cron::error::Error| e.to_string())
}

/// POSIX day-of-week numbers (0 and 7 are Sunday) as names.
fn posix_weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let name = |n: &str| -> Result<String, String> {
        match n.parse::<usize>() {
            Ok(i) if i < NAMES.len() => Ok(NAMES[i].to_owned()),
            Ok(i) => Err(format!("day of week {i} is out of range (0 to 7)")),
            Err(_) => Ok(n.to_owned()),
        }
    };
    field
        .split(',')
        .map(|part| {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (part, None),
            };
            let range = match range.split_once('-') {
                Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
                None if range == "*" => range.to_owned(),
                None => name(range)?,
            };
            Ok(match step {
                Some(step) => format!("{range}/{step}"),
                None => range,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map(|parts| parts.join(","))
}

/// `R[n]/<start>/<duration>`.
fn repeating_interval(text: &str, rest: &str) -> Result<Schedule, String> {
    let bad = |why: String| {
        format!("{text:?} is not an ISO 8601 repeating interval (R[n]/<start>/<duration>): {why}")
    };
    let mut parts = rest.splitn(3, '/');
    let (Some(count), Some(start), Some(every)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("three parts are needed".into()));
    };
    let repetitions = match count {
        "" => None,
        n => Some(
            n.parse::<u64>()
                .map_err(|_| bad(format!("{n:?} is not a count")))?,
        ),
    };
    let start: jiff::Timestamp = start
        .parse()
        .map_err(|e| bad(format!("start {start:?}: {e}")))?;
    let every = read::iso_duration(every).map_err(bad)?;
    if every.is_zero() {
        return Err(bad("the interval is zero".into()));
    }
    Ok(Schedule::Every {
        start,
        every,
        repetitions,
    })
}

#[cfg(test)]
mod tests;
