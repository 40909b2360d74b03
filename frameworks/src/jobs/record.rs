//! What the jobs framework keeps in its durable store (`Scheduler.Store`), and under which
//! keys:
//!
//! - `job/<name>`: a [`JobRecord`]: the spec file the job came from (re-read on restore with
//!   the same parser, so the stored form is the documented one), what its submitter
//!   uploaded, where it is, and its final counts once it ended.
//! - `inst/<name>/<shard>`: a [`ShardRecord`]: the phase and attempts of [`SHARD_SIZE`]
//!   instances of a job that has not ended; deleted when it ends.
//! - `out/<name>/<index>`: an [`OutputsRecord`]: the outputs of a succeeded instance of a job
//!   that another job takes inputs from.
//!
//! Values are JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Instances per [`ShardRecord`]: a write after a change rewrites one shard, not the job.
pub(crate) const SHARD_SIZE: u32 = 1024;

/// A spec file as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Submission {
    pub(crate) source: String,
    pub(crate) format: String,
    pub(crate) file: String,
    /// Local paths the spec names, as written, to the digests uploaded for them.
    pub(crate) uploaded: BTreeMap<String, String>,
    /// The principal its jobs belong to (`None`: not authenticated, or the master's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    /// Submission order.
    pub(crate) seq: u64,
    pub(crate) name: String,
    pub(crate) submission: Submission,
    pub(crate) state: String,
    pub(crate) message: String,
    pub(crate) submitted_ms: u64,
    pub(crate) ended_ms: Option<u64>,
    /// Set once the job ended (its shards are gone then).
    pub(crate) ended: Option<EndedCounts>,
    /// A cron job's place in its timetable.
    #[serde(default)]
    pub(crate) cron: Option<CronRecord>,
    /// A run of a cron job: the cron job (whose spec, in `submission`, it is made from), the
    /// run's number and when it must have started.
    #[serde(default)]
    pub(crate) run_of: Option<RunRecord>,
    /// A service's scale.
    #[serde(default)]
    pub(crate) service: Option<ServiceRecord>,
    /// The version of its spec (`submission`); 0 in records written before updates existed,
    /// meaning 1.
    #[serde(default)]
    pub(crate) version: u32,
    /// A service's rolling update under way.
    #[serde(default)]
    pub(crate) rollout: Option<RolloutRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RolloutRecord {
    pub(crate) failures: u64,
    /// Why this update goes back to an earlier spec; `None` for an update asked for.
    pub(crate) rollback_of: Option<String>,
    /// The spec file to roll back to (an update asked for).
    pub(crate) previous: Option<Submission>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServiceRecord {
    /// The instances it should have.
    pub(crate) target: u64,
    /// The instances in its shards (more than `target` while those past it are retired).
    pub(crate) len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CronRecord {
    /// The latest occurrence handled (run or skipped).
    pub(crate) last_ms: u64,
    pub(crate) next_run: u64,
    pub(crate) suspended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    pub(crate) cron: String,
    pub(crate) run: u64,
    pub(crate) start_by_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndedCounts {
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) attempts: u64,
}

/// Instances `shard * SHARD_SIZE ..`: one character per instance (`w` waiting, `l` launched,
/// `s` succeeded, `f` failed), and the attempts of those that differ from the usual (0 for
/// waiting, 1 otherwise), by offset in the shard. During a rolling update, also the spec
/// versions of launched instances not of the job's version, and the versions of the old
/// tasks kept for slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShardRecord {
    pub(crate) phases: String,
    pub(crate) attempts: BTreeMap<u32, u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) versions: BTreeMap<u32, u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) outgoing: BTreeMap<u32, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutputsRecord {
    /// `(path, size, digest)`.
    pub(crate) outputs: Vec<(String, u64, String)>,
}

pub(crate) const JOB_PREFIX: &str = "job/";
pub(crate) const SHARD_PREFIX: &str = "inst/";
pub(crate) const OUTPUTS_PREFIX: &str = "out/";

pub(crate) fn job_key(name: &str) -> String {
    format!("{JOB_PREFIX}{name}")
}

pub(crate) fn shard_key(name: &str, shard: u32) -> String {
    format!("{SHARD_PREFIX}{name}/{shard:05}")
}

pub(crate) fn outputs_key(name: &str, index: u32) -> String {
    format!("{OUTPUTS_PREFIX}{name}/{index:06}")
}

/// `(job, number)` of an `inst/` or `out/` key.
pub(crate) fn split_key<'a>(key: &'a str, prefix: &str) -> Option<(&'a str, u32)> {
    let (name, number) = key.strip_prefix(prefix)?.rsplit_once('/')?;
    Some((name, number.parse().ok()?))
}

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    Put(String, Vec<u8>),
    Delete(String),
}

impl Write {
    pub(crate) fn put(key: String, value: &impl Serialize) -> Self {
        // Serializing these plain structs cannot fail.
        Self::Put(key, serde_json::to_vec(value).unwrap_or_default())
    }

    pub(crate) fn key(&self) -> &str {
        match self {
            Self::Put(key, _) | Self::Delete(key) => key,
        }
    }
}
