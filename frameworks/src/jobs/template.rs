//! What a job's instances are launched from: its spec with local paths resolved to what the
//! submitter uploaded, and inputs from other jobs resolved to their outputs.

use std::collections::BTreeMap;

use corral_proto::{EnvVar, InputFile, InputSource as TaskInput, ModuleSource, TaskInfo};
use corral_types::{Digest, TaskId, TaskLimits, TaskOutput};

use super::record::Submission;
use crate::spec::{InputSource, JobSpec, ModuleRef};

/// What every instance's task is made from: the spec with its paths resolved to what the
/// submitter uploaded and its inputs from other jobs to their outputs.
/// `outputs_of` gives the kept outputs of a job, by instance.
pub(crate) fn build<'a>(
    spec: &JobSpec,
    submission: &Submission,
    outputs_of: impl Fn(&str) -> Option<&'a BTreeMap<u32, Vec<TaskOutput>>>,
) -> Result<TaskInfo, String> {
    let module = module(&spec.module, submission)?;
    let mut inputs = Vec::new();
    for input in &spec.inputs {
        match &input.source {
            InputSource::File(path) => inputs.push(InputFile {
                path: input.path.clone(),
                source: TaskInput::Artifact(uploaded(submission, path)?),
            }),
            InputSource::Artifact(digest) => inputs.push(InputFile {
                path: input.path.clone(),
                source: TaskInput::Artifact(*digest),
            }),
            InputSource::Job { job: from, output } => {
                let outputs_by_instance = outputs_of(from)
                    .ok_or_else(|| format!("input from job {from}, which is gone"))?;
                for (index, outputs) in outputs_by_instance {
                    for o in outputs {
                        if output.as_ref().is_some_and(|want| *want != o.path) {
                            continue;
                        }
                        inputs.push(InputFile {
                            path: format!(
                                "{}/{index}/{}",
                                input.path.trim_end_matches('/'),
                                o.path
                            ),
                            source: TaskInput::Artifact(o.digest),
                        });
                    }
                }
            }
        }
    }
    let mut env = spec.env.clone();
    env.push(EnvVar::plain("CORRAL_JOB", spec.name.clone()));
    let mut labels: BTreeMap<String, String> = spec.labels.iter().cloned().collect();
    labels.insert("corral.job".into(), spec.name.clone());
    Ok(TaskInfo {
        // Replaced per instance.
        id: TaskId::new(&spec.name).map_err(|e| e.to_string())?,
        name: spec.name.clone(),
        module,
        entrypoint: "_start".into(),
        args: spec.args.clone(),
        env,
        inputs,
        resources: spec.resources.clone(),
        limits: TaskLimits {
            max_fuel: spec.limits.max_fuel,
            timeout: spec.limits.timeout,
            max_output_bytes: spec.limits.max_output,
        },
        labels,
        argv0: Some(spec.name.clone()),
        preopens: Vec::new(),
        stdin: bytes::Bytes::new(),
        checkpoint: bytes::Bytes::new(),
        owner: submission.owner.clone(),
    })
}

/// Where the module comes from: a local path becomes what was uploaded for it.
pub(crate) fn module(module: &ModuleRef, submission: &Submission) -> Result<ModuleSource, String> {
    Ok(match module {
        ModuleRef::Digest(d) => ModuleSource::Digest(*d),
        ModuleRef::Url { url, digest } => ModuleSource::Url {
            url: url.clone(),
            digest: *digest,
        },
        ModuleRef::Path(path) => ModuleSource::Digest(uploaded(submission, path)?),
    })
}

/// The digest uploaded for a local path the spec names.
pub(crate) fn uploaded(submission: &Submission, path: &std::path::Path) -> Result<Digest, String> {
    let written = path.display().to_string();
    let digest = submission.uploaded.get(&written).ok_or_else(|| {
        format!(
            "{written}: a local file the submitter did not upload (submit with `corral job submit`)"
        )
    })?;
    digest
        .parse()
        .map_err(|e| format!("{written}: uploaded as {digest:?}: {e}"))
}
