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

mod constraints;
mod kinds;
mod node;
mod read;
mod schedule;

use constraints::constraints;
pub use kinds::{
    Backoff, BatchSpec, Concurrency, CronSpec, JobKind, Schedule, ServiceSpec, UpdatePolicy,
};
use kinds::{batch, cron, service};

pub(crate) use schedule::cron_schedule;
#[cfg(test)]
use schedule::posix_weekdays;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_proto::EnvVar;
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
    /// `env`, then `secret_env` (whose values are secrets: see `EnvVar` in `common.proto`).
    pub env: Vec<EnvVar>,
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

impl JobSpec {
    /// The jobs it waits for: a batch job's `depends_on` (other kinds wait for none).
    pub fn depends_on(&self) -> &[String] {
        match &self.kind {
            JobKind::Batch(b) => &b.depends_on,
            JobKind::Service(_) | JobKind::Cron(_) => &[],
        }
    }

    /// The role its instances run in: its own, else the default role.
    pub fn role_name(&self) -> &str {
        self.role.as_ref().map_or("*", |r| r.as_str())
    }
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

/// Most instances of one job.
pub const MAX_INSTANCES: u64 = 100_000;

const COMMON_FIELDS: &[&str] = &[
    "version",
    "name",
    "kind",
    "module",
    "args",
    "env",
    "secret_env",
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
            .map(JobSpec::depends_on)
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
    let mut env = Vec::new();
    for (field, secret) in [("env", false), ("secret_env", true)] {
        let vars = f.take(field).map(|e| r.string_map(e, field));
        env.extend(
            vars.unwrap_or_default()
                .into_iter()
                .map(|(name, value)| EnvVar {
                    name,
                    value,
                    secret,
                }),
        );
    }
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

#[cfg(test)]
mod tests;
