//! What a caller can do: the actions ACLs name, what each is taken on, and which action a
//! gRPC method or an HTTP route is.

/// An action ACLs grant or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    /// Subscribe a framework in a role (object: the role).
    RegisterFramework,
    /// Connect an agent and serve its tasks' modules and outputs.
    RegisterAgent,
    /// Copy modules between masters.
    ReplicateModules,
    /// See frameworks (object: their principal).
    ViewFrameworks,
    /// See tasks (object: their framework's principal).
    ViewTasks,
    /// List and read tasks' sandboxes and outputs (object: the task's principal).
    ViewSandboxes,
    /// Kill tasks as an operator (object: the task's principal).
    KillTasks,
    ViewAgents,
    ViewRoles,
    ViewMetrics,
    /// List, fetch and run modules and other artifacts (object: a principal who stored
    /// them).
    ViewModules,
    UploadModules,
    /// Set a role's weight (object: the role).
    SetWeights,
    /// Set or remove a role's quota (object: the role).
    SetQuotas,
    /// Reserve and unreserve resources for a role (object: the role).
    ReserveResources,
    /// Drain and reactivate agents.
    DrainAgents,
    /// See jobs (object: the principal who submitted them).
    ViewJobs,
    /// Submit, update, scale, kill, run, suspend and resume jobs (object: the principal who
    /// submitted them).
    ManageJobs,
    /// Launch tasks that run for another principal (`TaskInfo.owner`; object: that
    /// principal): what a jobs framework running as a process of its own needs.
    RunTasksFor,
}

/// What kind of object an action is taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    Nothing,
    Role,
    Owner,
}

const NAMES: &[(Action, &str)] = &[
    (Action::RegisterFramework, "register_framework"),
    (Action::RegisterAgent, "register_agent"),
    (Action::ReplicateModules, "replicate_modules"),
    (Action::ViewFrameworks, "view_frameworks"),
    (Action::ViewTasks, "view_tasks"),
    (Action::ViewSandboxes, "view_sandboxes"),
    (Action::KillTasks, "kill_tasks"),
    (Action::ViewAgents, "view_agents"),
    (Action::ViewRoles, "view_roles"),
    (Action::ViewMetrics, "view_metrics"),
    (Action::ViewModules, "view_modules"),
    (Action::UploadModules, "upload_modules"),
    (Action::SetWeights, "set_weights"),
    (Action::SetQuotas, "set_quotas"),
    (Action::ReserveResources, "reserve_resources"),
    (Action::DrainAgents, "drain_agents"),
    (Action::ViewJobs, "view_jobs"),
    (Action::ManageJobs, "manage_jobs"),
    (Action::RunTasksFor, "run_tasks_for"),
];

impl Action {
    pub(crate) fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("unknown", |(_, n)| n)
    }

    pub(crate) fn object_kind(self) -> ObjectKind {
        match self {
            Action::RegisterFramework
            | Action::SetWeights
            | Action::SetQuotas
            | Action::ReserveResources => ObjectKind::Role,
            Action::ViewFrameworks
            | Action::ViewTasks
            | Action::ViewSandboxes
            | Action::KillTasks
            | Action::ViewModules
            | Action::ViewJobs
            | Action::ManageJobs
            | Action::RunTasksFor => ObjectKind::Owner,
            _ => ObjectKind::Nothing,
        }
    }

    /// Whether the action changes the cluster: every attempt of one leaves an audit line.
    pub(crate) fn mutates(self) -> bool {
        !matches!(
            self,
            Action::ViewFrameworks
                | Action::ViewTasks
                | Action::ViewSandboxes
                | Action::ViewAgents
                | Action::ViewRoles
                | Action::ViewMetrics
                | Action::ViewModules
                | Action::ViewJobs
        )
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(a, _)| *a)
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
                format!("unknown action {s:?} (known: {})", known.join(", "))
            })
    }
}

/// How a request is checked where it enters, before any handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gatekeeping {
    /// Served to anyone: health, reflection, the UI's files, the OpenAPI document.
    Open,
    /// The caller must authenticate and be allowed `Action` (on nothing, or on everyone's
    /// objects).
    Action(Action),
    /// The caller must authenticate; the handler decides on the request's object.
    Handler,
}

/// The gatekeeping of a gRPC method (`/package.Service/Method`).
pub(crate) fn grpc(path: &str) -> Gatekeeping {
    use Gatekeeping::{Action as A, Handler, Open};
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Handler;
    };
    match (service, method) {
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => Open,
        ("corral.v1.Scheduler", _) => Handler,
        ("corral.v1.AgentLink", _) => A(Action::RegisterAgent),
        ("corral.v1.MasterPeer", _) => A(Action::ReplicateModules),
        // The Jobs service decides on each job's owner (see `auth::jobs`).
        ("corral.v1.Jobs", _) => Handler,
        ("corral.v1.Operator", method) => match method {
            // The whole cluster's state: every principal's tasks.
            "GetState" => A(Action::ViewTasks),
            // The handler narrows the stream to what the caller may list.
            "Subscribe" => Handler,
            "ListAgents" => A(Action::ViewAgents),
            "GetRoles" => A(Action::ViewRoles),
            "DrainAgent" | "ReactivateAgent" => A(Action::DrainAgents),
            "UploadModule" => A(Action::UploadModules),
            _ => Handler,
        },
        // Unknown services: tonic answers UNIMPLEMENTED, to authenticated callers only.
        _ => Handler,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_a_name_that_parses_back() {
        for (action, name) in NAMES {
            assert_eq!(action.name(), *name);
            assert_eq!(name.parse::<Action>(), Ok(*action));
        }
    }

    #[test]
    fn methods_map_to_their_gatekeeping() {
        assert_eq!(grpc("/grpc.health.v1.Health/Check"), Gatekeeping::Open);
        assert_eq!(
            grpc("/corral.v1.AgentLink/Connect"),
            Gatekeeping::Action(Action::RegisterAgent)
        );
        assert_eq!(grpc("/corral.v1.Scheduler/Call"), Gatekeeping::Handler);
        assert_eq!(
            grpc("/corral.v1.Operator/DrainAgent"),
            Gatekeeping::Action(Action::DrainAgents)
        );
        assert_eq!(grpc("/corral.v1.Operator/KillTask"), Gatekeeping::Handler);
        assert_eq!(grpc("/nonsense"), Gatekeeping::Handler);
    }
}
