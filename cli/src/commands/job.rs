//! `corral job ...`: built-in jobs. `validate` reads a spec file (TOML, YAML or JSON, by its
//! extension or `--format`) and reports every problem with its file, line and column, as
//! `submit` will before anything reaches the cluster.

use std::path::Path;

use corral_frameworks::spec::{self, Format, JobKind, JobSpec, Schedule};

use crate::cli::JobValidateArgs;
use crate::commands::Exit;

pub(super) fn validate(args: &JobValidateArgs) -> anyhow::Result<u8> {
    let jobs = read_spec(&args.file, args.format.as_deref())?;
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

/// The jobs of a spec file, or every problem it has (exit 2).
pub(crate) fn read_spec(path: &Path, format: Option<&str>) -> anyhow::Result<Vec<JobSpec>> {
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
    spec::parse(&source, format, &path.display().to_string())
        .map_err(|errors| Exit::invalid(errors.to_string()).into())
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
