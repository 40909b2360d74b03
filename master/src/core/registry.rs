//! What the core keeps durably, and how it comes back.
//!
//! The registry holds agents (admitted, unreachable, gone, draining), frameworks (info,
//! failover timeout, when they disconnected, removal), role weights, quotas, dynamic
//! reservations, the artifact index, tasks' outputs and frameworks' stores. Tasks are soft
//! state, rebuilt from agent re-registration, as in Mesos.
//!
//! The core stays sans-IO: a change to a registered fact emits [`Effect::Persist`] *before*
//! the effects that announce it (REGISTERED, SUBSCRIBED, a reply), and the runtime holds
//! every later effect back until the write is durable. Launches, status updates and
//! acknowledgements write nothing, so the task hot path never waits on the store.
//!
//! Times in records are unix milliseconds: the core's [`Timestamp`]s start at zero on every
//! start and cannot name a moment before it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use corral_types::{
    AgentId, AgentState, Digest, FrameworkId, FrameworkState, Quota, Resources, Role, Timestamp,
    Weight,
};

use corral_proto::{ServiceError, TaskStatus};

use super::outputs::OutputsRecord;
use super::tasks::TaskKey;
use super::{Agent, AgentInfo, Effect, Framework, FrameworkInfo, MasterCore};
use crate::auth::Visibility;

/// An agent as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentRecord {
    pub id: AgentId,
    pub info: AgentInfo,
    pub state: AgentState,
    pub registered_unix_millis: u64,
    pub drain: Option<DrainRecord>,
    /// Dynamic reservations by role, restored when the agent re-registers.
    pub reservations: Vec<(Role, Resources)>,
}

/// A drain in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DrainRecord {
    /// When the remaining tasks are killed; `None` once they were.
    pub deadline_unix_millis: Option<u64>,
    pub mark_gone: bool,
}

/// A framework as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameworkRecord {
    pub id: FrameworkId,
    pub info: FrameworkInfo,
    pub registered_unix_millis: u64,
    /// Set while the framework is disconnected: its failover timeout runs from here.
    pub disconnected_unix_millis: Option<u64>,
    /// Torn down: it may never subscribe again.
    pub removed: bool,
}

/// An artifact in the artifact store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArtifactRecord {
    pub digest: Digest,
    pub size: u64,
    pub stored_unix_millis: u64,
    pub kind: ArtifactKind,
    /// The principals who stored it: uploaded it, or ran the task that left it. Empty when
    /// it was stored without authentication; then only those who see every principal's
    /// modules may use it.
    pub owners: BTreeSet<String>,
}

impl ArtifactRecord {
    /// Whether a principal who sees `visible` principals' modules may use it.
    pub(crate) fn visible_to(&self, visible: &Visibility) -> bool {
        *visible == Visibility::All || self.owners.iter().any(|o| visible.sees(Some(o)))
    }
}

/// What an artifact was stored as. Bytes uploaded as a module are a module, even when a task
/// left them as an output first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArtifactKind {
    /// Uploaded as a module (Operator.UploadModule): kept for as long as the cluster runs.
    Module,
    /// Left by a task in its outputs folder: counts against the cluster's output cap, and
    /// leaves the index when no kept task's outputs list it any more.
    Output,
}

/// How long after its admission an output is not unindexed: what its agent may take to
/// store it on every master and report the status that lists it.
pub(super) const OUTPUT_IN_FLIGHT: Duration = Duration::from_secs(10 * 60);

/// One change to the registry. Records are written whole: the newest wins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RegistryWrite {
    Agent(AgentRecord),
    Framework(FrameworkRecord),
    Weight {
        role: Role,
        weight: Weight,
    },
    /// `None` removes the role's quota.
    Quota {
        role: Role,
        quota: Option<Quota>,
    },
    Artifact(ArtifactRecord),
    /// The artifact is no longer indexed (its bytes are then deleted by every master).
    DropArtifact(Digest),
    /// The outputs a task left.
    TaskOutputs(OutputsRecord),
    /// A task's outputs are no longer listed.
    DropTaskOutputs(TaskKey),
    /// A key of a framework's store: its value and version, or `None` to delete it.
    Kv {
        framework: FrameworkId,
        key: String,
        entry: Option<(bytes::Bytes, u64)>,
    },
}

/// Everything the registry holds, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Recovered {
    pub agents: Vec<AgentRecord>,
    pub frameworks: Vec<FrameworkRecord>,
    pub weights: Vec<(Role, Weight)>,
    pub quotas: Vec<(Role, Quota)>,
    pub artifacts: Vec<ArtifactRecord>,
    pub task_outputs: Vec<OutputsRecord>,
    /// Frameworks' store entries: framework, key, value, version.
    pub kv: Vec<(FrameworkId, String, bytes::Bytes, u64)>,
}

impl MasterCore {
    /// Restores the registry's contents; call once, before any event. Agents have the
    /// re-registration timeout to come back (else they become UNREACHABLE); frameworks have
    /// their failover timeout (from their disconnection, or from now if they were connected)
    /// to re-subscribe (else they are torn down). Weights, quotas and the artifact index are
    /// effective at once.
    pub(crate) fn recover(&mut self, recovered: Recovered, now: Timestamp) {
        for (role, weight) in recovered.weights {
            self.allocator.set_weight(&role, weight);
        }
        for (role, quota) in recovered.quotas {
            // Forced: no agent has re-registered yet, so no guarantee would fit.
            if let Err(e) = self.allocator.set_quota(&role, quota, true) {
                tracing::warn!(%role, error = %e, "recorded quota not restored");
            }
        }
        for f in recovered.frameworks {
            self.recover_framework(f, now);
        }
        let reregister_by = now.saturating_add(self.config.agent_reregister_timeout);
        for a in recovered.agents {
            let expected = matches!(
                a.state,
                AgentState::Admitted | AgentState::Draining | AgentState::Drained
            );
            let drain = a.drain.map(|d| {
                let deadline = d.deadline_unix_millis.map(|t| self.core_time(t));
                (deadline, d.mark_gone)
            });
            self.agents.insert(
                a.id.clone(),
                Agent {
                    id: a.id,
                    info: a.info,
                    conn: None,
                    state: a.state,
                    registered_unix_millis: a.registered_unix_millis,
                    last_seen: now,
                    cached: BTreeSet::new(),
                    drain,
                    reservations: a.reservations,
                    reregister_by: expected.then_some(reregister_by),
                },
            );
        }
        self.artifacts = recovered
            .artifacts
            .into_iter()
            .map(|a| (a.digest, a))
            .collect();
        self.output_bytes = self
            .artifacts
            .values()
            .filter(|a| a.kind == ArtifactKind::Output)
            .map(|a| a.size)
            .sum();
        for record in recovered.task_outputs {
            self.task_outputs.insert(record);
        }
        for (framework, key, value, version) in recovered.kv {
            self.kv.recover(framework, key, value, version);
        }
        tracing::info!(
            agents = self.agents.len(),
            frameworks = self.frameworks.len(),
            artifacts = self.artifacts.len(),
            task_outputs = self.task_outputs.len(),
            "registry recovered"
        );
    }

    fn recover_framework(&mut self, f: FrameworkRecord, now: Timestamp) {
        let timeout = f.info.failover_timeout;
        let state = if f.removed {
            FrameworkState::Completed
        } else {
            match self
                .allocator
                .add_framework(f.id.clone(), &f.info.roles, &[])
            {
                Ok(()) => {
                    let inactive = self.allocator.set_framework_active(&f.id, false);
                    self.allocator_agrees("pausing a recovered framework", inactive);
                    FrameworkState::Disconnected
                }
                Err(e) => {
                    tracing::warn!(framework_id = %f.id, error = %e, "recorded framework not restored");
                    return;
                }
            }
        };
        let failover_deadline =
            (state == FrameworkState::Disconnected).then(|| match f.disconnected_unix_millis {
                Some(at) => {
                    // From the unix deadline: a disconnection before this start cannot be
                    // a core timestamp.
                    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                    self.core_time(at.saturating_add(timeout_ms))
                }
                None => now.saturating_add(timeout),
            });
        self.frameworks.insert(
            f.id.clone(),
            Framework {
                id: f.id.clone(),
                info: FrameworkInfo {
                    id: Some(f.id.clone()),
                    ..f.info
                },
                conn: None,
                stream_id: String::new(),
                state,
                registered_unix_millis: f.registered_unix_millis,
                disconnected_unix_millis: f
                    .disconnected_unix_millis
                    .or((!f.removed).then(|| self.unix_millis(now))),
                failover_deadline,
                next_heartbeat: now,
                suppressed: BTreeSet::new(),
            },
        );
    }

    /// A unix time as a core timestamp (times before this start are the start).
    fn core_time(&self, unix_millis: u64) -> Timestamp {
        Timestamp::from_millis(unix_millis.saturating_sub(self.config.started_at_unix_millis))
    }

    fn agent_record(&self, a: &Agent) -> AgentRecord {
        AgentRecord {
            id: a.id.clone(),
            info: a.info.clone(),
            state: a.state,
            registered_unix_millis: a.registered_unix_millis,
            drain: a.drain.map(|(deadline, mark_gone)| DrainRecord {
                deadline_unix_millis: deadline.map(|t| self.unix_millis(t)),
                mark_gone,
            }),
            reservations: a.reservations.clone(),
        }
    }

    /// The registry's record of an agent as the core has it now.
    pub(super) fn agent_record_of(&self, id: &AgentId) -> Option<AgentRecord> {
        self.agents.get(id).map(|a| self.agent_record(a))
    }

    /// Records an agent if its record differs from `before` (its record before the change).
    pub(super) fn persist_agent(&mut self, id: &AgentId, before: Option<AgentRecord>) {
        if let Some(record) = self.agent_record_of(id)
            && before.as_ref() != Some(&record)
        {
            self.effects
                .push(Effect::Persist(RegistryWrite::Agent(record)));
            self.note_agent(id, before.is_none());
        }
    }

    pub(super) fn framework_record_of(&self, id: &FrameworkId) -> Option<FrameworkRecord> {
        let f = self.frameworks.get(id)?;
        Some(FrameworkRecord {
            id: f.id.clone(),
            info: f.info.clone(),
            registered_unix_millis: f.registered_unix_millis,
            disconnected_unix_millis: f.disconnected_unix_millis,
            removed: f.state == FrameworkState::Completed,
        })
    }

    /// Records a framework if its record differs from `before`. Placeholders for frameworks
    /// known only from re-registered tasks are not recorded: they have no info of their own.
    pub(super) fn persist_framework(&mut self, id: &FrameworkId, before: Option<FrameworkRecord>) {
        if let Some(record) = self.framework_record_of(id)
            && before.as_ref() != Some(&record)
            && !self.placeholders.contains(id)
        {
            self.effects
                .push(Effect::Persist(RegistryWrite::Framework(record)));
            self.note_framework(id, before.is_none());
        }
    }

    pub(super) fn persist(&mut self, write: RegistryWrite) {
        self.effects.push(Effect::Persist(write));
    }

    /// Records an artifact stored in the artifact store (once per digest), and `owner` as
    /// one who stored it.
    pub(super) fn record_artifact(
        &mut self,
        digest: Digest,
        size: u64,
        kind: ArtifactKind,
        owner: Option<&str>,
        now: Timestamp,
    ) {
        if let Some(record) = self.artifacts.get_mut(&digest) {
            if kind == ArtifactKind::Module && record.kind == ArtifactKind::Output {
                record.kind = ArtifactKind::Module;
                self.output_bytes = self.output_bytes.saturating_sub(record.size);
                let record = record.clone();
                self.persist(RegistryWrite::Artifact(record));
            }
            if let Some(owner) = owner {
                self.add_artifact_owner(&digest, owner);
            }
            return;
        }
        if kind == ArtifactKind::Output {
            self.output_bytes = self.output_bytes.saturating_add(size);
        }
        let record = ArtifactRecord {
            digest,
            size,
            stored_unix_millis: self.unix_millis(now),
            kind,
            owners: owner.map(str::to_owned).into_iter().collect(),
        };
        self.artifacts.insert(digest, record.clone());
        self.persist(RegistryWrite::Artifact(record));
    }

    /// Records `owner` as one who stored an indexed artifact (bytes anyone may store again:
    /// holding them is what using them takes).
    fn add_artifact_owner(&mut self, digest: &Digest, owner: &str) {
        let Some(record) = self.artifacts.get_mut(digest) else {
            return;
        };
        if record.owners.insert(owner.to_owned()) {
            let record = record.clone();
            self.persist(RegistryWrite::Artifact(record));
        }
    }

    /// Reservations on an agent changed: keep them with the agent and record them.
    pub(super) fn note_reservations(&mut self, id: &AgentId) {
        let before = self.agent_record_of(id);
        let reservations = self.reservations_on(id).unwrap_or_default();
        if let Some(a) = self.agents.get_mut(id) {
            a.reservations = reservations;
        }
        self.persist_agent(id, before);
    }

    /// The dynamic reservations the allocator holds on an agent. (Agents declare no static
    /// reservations, so every reservation there is dynamic.)
    pub(super) fn reservations_on(&self, id: &AgentId) -> Option<Vec<(Role, Resources)>> {
        self.allocator.agent(id).map(|a| a.reservations)
    }

    /// Whether an output of `size` bytes may be stored: `Ok(true)` when the index holds it
    /// already, `Ok(false)` when the output cap has room for it. To make room, the oldest
    /// tasks' outputs are dropped, as Mesos collects the oldest sandboxes.
    pub(super) fn admit_output(
        &mut self,
        digest: &Digest,
        size: u64,
        now: Timestamp,
    ) -> Result<bool, ServiceError> {
        // Remembered while its agent may still be storing it (see OUTPUT_IN_FLIGHT).
        self.admitted_outputs.note(*digest, now);
        if self.artifacts.contains_key(digest) {
            return Ok(true);
        }
        let cap = self.config.max_output_bytes;
        if size > cap {
            // This file only: a smaller one after it may fit.
            return Err(ServiceError::InvalidArgument(format!(
                "larger than the cluster's whole output store: {size} bytes, its cap is {cap}"
            )));
        }
        while self.output_bytes.saturating_add(size) > cap {
            let Some((task, unlisted)) = self.task_outputs.pop_oldest() else {
                break;
            };
            self.persist(RegistryWrite::DropTaskOutputs(task));
            self.unindex_outputs(unlisted, now);
        }
        if self.output_bytes.saturating_add(size) > cap {
            self.unindex_unreported_outputs(now);
        }
        if self.output_bytes.saturating_add(size) > cap {
            return Err(ServiceError::ResourceExhausted(format!(
                "the cluster's output store is full: it holds {} of its {cap} bytes in outputs \
                 still being reported, {size} more do not fit",
                self.output_bytes
            )));
        }
        Ok(false)
    }

    /// Removes from the index the outputs no record lists whose agents would have reported
    /// them by now: the status that would have listed them was lost, or their last record
    /// went while they were in flight for a task that never reported.
    fn unindex_unreported_outputs(&mut self, now: Timestamp) {
        // An output admitted before this start may still be reported by its agent.
        let started_long_ago = now.saturating_duration_since(Timestamp::ZERO) >= OUTPUT_IN_FLIGHT;
        let unreported: Vec<Digest> = self
            .artifacts
            .values()
            .filter(|a| a.kind == ArtifactKind::Output && !self.task_outputs.lists(&a.digest))
            .filter(|a| self.admitted_outputs.admitted(&a.digest).is_some() || started_long_ago)
            .map(|a| a.digest)
            .collect();
        self.unindex_outputs(unreported, now);
    }

    /// Removes from the index the outputs no kept record lists, but those that may be on
    /// their way to a new listing and those uploaded as modules too.
    fn unindex_outputs(&mut self, unlisted: Vec<Digest>, now: Timestamp) {
        for digest in unlisted {
            let in_flight = self
                .admitted_outputs
                .admitted(&digest)
                .is_some_and(|at| now.saturating_duration_since(at) < OUTPUT_IN_FLIGHT);
            if in_flight {
                continue;
            }
            let Some(record) = self.artifacts.get(&digest) else {
                continue;
            };
            if record.kind != ArtifactKind::Output {
                continue;
            }
            self.output_bytes = self.output_bytes.saturating_sub(record.size);
            self.artifacts.remove(&digest);
            self.persist(RegistryWrite::DropArtifact(digest));
        }
    }

    /// Records the outputs a task left, as its terminal status lists them. Outputs are
    /// uploaded (and indexed) before the status that lists them; one the index no longer
    /// holds was dropped to make room since (the status was held back long, or is sent
    /// again), and moves from the status's outputs to what it says was not kept.
    pub(super) fn record_outputs(&mut self, status: &mut TaskStatus, now: Timestamp) {
        if !status.state.is_terminal()
            || (status.outputs.is_empty() && status.outputs_not_kept.is_none())
        {
            return;
        }
        let gone: Vec<&str> = status
            .outputs
            .iter()
            .filter(|o| !self.artifacts.contains_key(&o.digest))
            .map(|o| o.path.as_str())
            .collect();
        if !gone.is_empty() {
            let mut note = corral_proto::not_kept_list(&gone);
            note.push_str(" (dropped to make room in the cluster's output store)");
            status.outputs_not_kept = Some(match status.outputs_not_kept.take() {
                Some(before) => format!("{before}, {note}"),
                None => note,
            });
            status
                .outputs
                .retain(|o| self.artifacts.contains_key(&o.digest));
        }
        let key = (status.framework_id.clone(), status.task_id.clone());
        let owner = match self.tasks.find(&key) {
            Some(task) => self.task_principal(&key.0, task),
            None => self.principal_of(&key.0),
        }
        .map(str::to_owned);
        let record = OutputsRecord {
            framework_id: status.framework_id.clone(),
            task_id: status.task_id.clone(),
            agent_id: status.agent_id.clone(),
            state: status.state,
            reason: status.reason,
            finished_unix_millis: status.timestamp_millis,
            outputs: status.outputs.clone(),
            not_kept: status.outputs_not_kept.clone(),
            owner: owner.clone(),
        };
        if let Some(owner) = owner {
            for output in &status.outputs {
                self.add_artifact_owner(&output.digest, &owner);
            }
        }
        // Reported: no longer in flight. (Another task storing the same bytes at the same
        // time loses that protection; it matters only if every record listing them goes
        // before its status comes.)
        for output in &status.outputs {
            self.admitted_outputs.reported(&output.digest);
        }
        let recorded = self.task_outputs.insert(record.clone());
        if recorded.new {
            self.persist(RegistryWrite::TaskOutputs(record));
        }
        for key in recorded.dropped {
            self.persist(RegistryWrite::DropTaskOutputs(key));
        }
        self.unindex_outputs(recorded.unlisted, now);
    }
}

/// The artifact index, by digest.
pub(super) type ArtifactIndex = BTreeMap<Digest, ArtifactRecord>;
