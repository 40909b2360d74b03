//! Keeping a copy of tasks from the operator event stream: a TASK_UPDATED carries only what
//! can change ([`v1::TaskUpdate`]), applied over the summary the watcher holds.

use crate::v1;

impl v1::TaskUpdate {
    /// What can change of a task, from its summary.
    pub fn of(t: &v1::TaskSummary) -> Self {
        v1::TaskUpdate {
            id: t.id.clone(),
            framework_id: t.framework_id.clone(),
            agent_id: t.agent_id.clone(),
            state: t.state,
            reason: t.reason,
            message: t.message.clone(),
            usage: t.usage,
            updated_at_millis: t.updated_at_millis,
            progress: t.progress.clone(),
            result_json: t.result_json.clone(),
            outputs: t.outputs.clone(),
            owner: t.owner.clone(),
        }
    }

    /// Writes this update over `task`, the same task's summary as the watcher last knew it.
    pub fn apply_to(self, task: &mut v1::TaskSummary) {
        let v1::TaskUpdate {
            id,
            framework_id,
            agent_id,
            state,
            reason,
            message,
            usage,
            updated_at_millis,
            progress,
            result_json,
            outputs,
            owner,
        } = self;
        task.id = id;
        task.framework_id = framework_id;
        task.agent_id = agent_id;
        task.state = state;
        task.reason = reason;
        task.message = message;
        task.usage = usage;
        task.updated_at_millis = updated_at_millis;
        task.progress = progress;
        task.result_json = result_json;
        task.outputs = outputs;
        task.owner = owner;
    }

    /// A summary of the task from this update alone, for a watcher that does not hold it:
    /// what never changes (name, module, resources, labels) is empty.
    pub fn into_summary(self) -> v1::TaskSummary {
        let mut task = v1::TaskSummary::default();
        self.apply_to(&mut task);
        task
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn an_update_decodes_as_the_summary_it_applies_to() {
        let update = v1::TaskUpdate {
            id: "t1".into(),
            framework_id: "f1".into(),
            agent_id: "a1".into(),
            state: v1::TaskState::Finished as i32,
            reason: 3,
            message: "done".into(),
            usage: Some(v1::Usage {
                fuel_consumed: 7,
                ..Default::default()
            }),
            updated_at_millis: 42,
            progress: Some(v1::Progress {
                fraction: 1.0,
                message: "all".into(),
            }),
            result_json: "{}".into(),
            outputs: vec![v1::TaskOutput {
                path: "out".into(),
                size: 1,
                digest: "sha256:00".into(),
            }],
            owner: "alice".into(),
        };
        let decoded = v1::TaskSummary::decode(update.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, update.clone().into_summary());

        let mut held = v1::TaskSummary {
            name: "kept".into(),
            module: "sha256:11".into(),
            state: v1::TaskState::Running as i32,
            message: "old".into(),
            ..Default::default()
        };
        update.clone().apply_to(&mut held);
        assert_eq!(v1::TaskUpdate::of(&held), update);
        assert_eq!(
            (held.name.as_str(), held.module.as_str()),
            ("kept", "sha256:11")
        );
        assert_eq!(held.state, v1::TaskState::Finished as i32);
        assert_eq!(held.message, "done");
        assert_eq!(held.outputs.len(), 1);
    }
}
