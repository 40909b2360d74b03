//! Access control lists in the spirit of Mesos's local authorizer: ordered rules, each
//! naming actions, the principals it applies to and the objects it covers. The first rule
//! that applies to the principal and covers the object decides: `objects = "none"` denies,
//! anything else allows. When no rule decides, the answer is no.
//!
//! ```toml
//! [[acl]]
//! actions = ["register_framework"]
//! principals = ["etl"]
//! objects = ["eng/*"]          # roles: `eng/*` is eng and every role under it
//!
//! [[acl]]
//! actions = ["view_tasks", "kill_tasks", "view_sandboxes"]
//! principals = ["ops"]
//! objects = "any"              # tasks of every principal
//! ```

use std::path::Path;

use corral_types::Role;
use serde::Deserialize;

use super::action::{Action, ObjectKind};

/// What a decision is about: the object an action is taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Object<'a> {
    /// The action has no object (draining agents, uploading modules).
    Nothing,
    /// A role (registering a framework in it, setting its weight or quota).
    Role(&'a Role),
    /// The objects of one principal (its framework's tasks and sandboxes); `None` for those
    /// made while the master did not authenticate.
    Owner(Option<&'a str>),
    /// The objects of every principal (the whole cluster's state and event stream).
    Everyone,
}

impl std::fmt::Display for Object<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Nothing => Ok(()),
            Object::Role(role) => write!(f, "role {role}"),
            Object::Owner(Some(p)) => write!(f, "principal {p}"),
            Object::Owner(None) => f.write_str("no principal"),
            Object::Everyone => f.write_str("every principal"),
        }
    }
}

/// The rules, in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Acls {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    actions: Vec<Action>,
    principals: Set,
    objects: Set,
}

/// `"any"`, `"none"`, or a list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Set {
    Any,
    None,
    Some(Vec<String>),
}

impl Acls {
    /// Reads and checks an ACL file.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Self::parse(&text)
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let rules = file
            .acl
            .into_iter()
            .enumerate()
            .map(|(i, rule)| {
                Rule::check(rule).map_err(|e| format!("[[acl]] number {}: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// Whether `principal` may take `action` on `object`.
    pub(crate) fn allows(&self, principal: &str, action: Action, object: Object<'_>) -> bool {
        for rule in &self.rules {
            if !rule.actions.contains(&action) || !rule.principals.has(principal) {
                continue;
            }
            match &rule.objects {
                Set::None => return false,
                Set::Any => return true,
                Set::Some(names) if names.iter().any(|n| covers(n, object)) => return true,
                Set::Some(_) => {}
            }
        }
        false
    }
}

impl Acls {
    /// The names rules list as objects of `action` for `principal` (candidates for what it
    /// may see beyond its own; each still needs [`Acls::allows`]).
    pub(crate) fn named_objects<'a>(
        &'a self,
        principal: &'a str,
        action: Action,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.actions.contains(&action) && r.principals.has(principal))
            .flat_map(|r| match &r.objects {
                Set::Some(names) => names.as_slice(),
                Set::Any | Set::None => &[],
            })
            .map(String::as_str)
    }
}

/// Whether the list entry `name` covers `object`.
fn covers(name: &str, object: Object<'_>) -> bool {
    match object {
        Object::Role(role) => {
            let role = role.as_str();
            match name.strip_suffix("/*") {
                Some(parent) => {
                    role == parent
                        || role
                            .strip_prefix(parent)
                            .is_some_and(|rest| rest.starts_with('/'))
                }
                None => role == name,
            }
        }
        Object::Owner(Some(owner)) => owner == name,
        Object::Owner(None) | Object::Everyone | Object::Nothing => false,
    }
}

impl Set {
    fn has(&self, name: &str) -> bool {
        match self {
            Set::Any => true,
            Set::None => false,
            Set::Some(names) => names.iter().any(|n| n == name),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    acl: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    actions: Vec<String>,
    principals: SetFile,
    #[serde(default)]
    objects: Option<SetFile>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SetFile {
    Keyword(String),
    Names(Vec<String>),
}

impl SetFile {
    fn check(self, what: &str) -> Result<Set, String> {
        match self {
            SetFile::Keyword(k) if k == "any" => Ok(Set::Any),
            SetFile::Keyword(k) if k == "none" => Ok(Set::None),
            SetFile::Keyword(k) => Err(format!(
                "{what} is \"any\", \"none\" or a list of names, not {k:?}"
            )),
            SetFile::Names(names) if names.is_empty() => Err(format!(
                "{what} is an empty list; write \"none\" to match nothing"
            )),
            SetFile::Names(names) => Ok(Set::Some(names)),
        }
    }
}

impl Rule {
    fn check(rule: RuleFile) -> Result<Self, String> {
        if rule.actions.is_empty() {
            return Err("actions is empty".into());
        }
        let actions = rule
            .actions
            .iter()
            .map(|a| a.parse::<Action>())
            .collect::<Result<Vec<_>, _>>()?;
        let principals = rule.principals.check("principals")?;
        let objects = match rule.objects {
            Some(objects) => objects.check("objects")?,
            None => Set::Any,
        };
        if let Set::Some(names) = &objects {
            for action in &actions {
                match action.object_kind() {
                    ObjectKind::Nothing => {
                        return Err(format!(
                            "{action} takes no objects: objects must be \"any\" or \"none\""
                        ));
                    }
                    ObjectKind::Role => {
                        for name in names {
                            let role = name.strip_suffix("/*").unwrap_or(name);
                            role.parse::<Role>()
                                .map_err(|e| format!("objects of {action}: {name:?}: {e}"))?;
                        }
                    }
                    ObjectKind::Owner => {}
                }
            }
        }
        Ok(Self {
            actions,
            principals,
            objects,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(s: &str) -> Role {
        s.parse().unwrap()
    }

    const FILE: &str = r#"
        [[acl]]
        actions = ["register_framework"]
        principals = ["mallory"]
        objects = "none"

        [[acl]]
        actions = ["register_framework", "set_quotas"]
        principals = "any"
        objects = ["eng/*", "*"]

        [[acl]]
        actions = ["kill_tasks", "view_tasks"]
        principals = ["ops"]
        objects = "any"

        [[acl]]
        actions = ["view_tasks"]
        principals = ["auditor"]
        objects = ["alice"]

        [[acl]]
        actions = ["drain_agents"]
        principals = ["ops"]
    "#;

    #[test]
    fn the_first_rule_that_applies_decides_and_none_denies() {
        let acls = Acls::parse(FILE).unwrap();
        let eng = role("eng/batch");
        assert!(!acls.allows("mallory", Action::RegisterFramework, Object::Role(&eng)));
        assert!(acls.allows("alice", Action::RegisterFramework, Object::Role(&eng)));
        assert!(acls.allows("alice", Action::SetQuotas, Object::Role(&role("eng"))));
        assert!(acls.allows("alice", Action::RegisterFramework, Object::Role(&role("*"))));
        assert!(!acls.allows(
            "alice",
            Action::RegisterFramework,
            Object::Role(&role("engx"))
        ));
        assert!(!acls.allows(
            "alice",
            Action::RegisterFramework,
            Object::Role(&role("ops"))
        ));
    }

    #[test]
    fn owners_and_everyone_are_objects_of_task_actions() {
        let acls = Acls::parse(FILE).unwrap();
        assert!(acls.allows("ops", Action::KillTasks, Object::Owner(Some("alice"))));
        assert!(acls.allows("ops", Action::ViewTasks, Object::Everyone));
        assert!(acls.allows("auditor", Action::ViewTasks, Object::Owner(Some("alice"))));
        assert!(!acls.allows("auditor", Action::ViewTasks, Object::Owner(Some("bob"))));
        assert!(!acls.allows("auditor", Action::ViewTasks, Object::Everyone));
        assert!(!acls.allows("auditor", Action::KillTasks, Object::Owner(Some("alice"))));
    }

    #[test]
    fn nothing_is_allowed_that_no_rule_grants() {
        let acls = Acls::parse(FILE).unwrap();
        assert!(acls.allows("ops", Action::DrainAgents, Object::Nothing));
        assert!(!acls.allows("alice", Action::DrainAgents, Object::Nothing));
        assert!(!acls.allows("alice", Action::UploadModules, Object::Nothing));
        assert!(!Acls::default().allows("ops", Action::ViewMetrics, Object::Nothing));
    }

    #[test]
    fn bad_files_are_refused_with_where_and_why() {
        for (text, says) in [
            (
                "[[acl]]\nactions = [\"fly\"]\nprincipals = \"any\"",
                "unknown action \"fly\"",
            ),
            (
                "[[acl]]\nactions = []\nprincipals = \"any\"",
                "actions is empty",
            ),
            (
                "[[acl]]\nactions = [\"view_tasks\"]\nprincipals = \"all\"",
                "not \"all\"",
            ),
            (
                "[[acl]]\nactions = [\"view_tasks\"]\nprincipals = []",
                "empty list",
            ),
            (
                "[[acl]]\nactions = [\"drain_agents\"]\nprincipals = \"any\"\nobjects = [\"a\"]",
                "takes no objects",
            ),
            (
                "[[acl]]\nactions = [\"set_weights\"]\nprincipals = \"any\"\nobjects = [\"/bad\"]",
                "objects of set_weights",
            ),
            (
                "[[acl]]\nactions = [\"view_tasks\"]\nprincipal = \"any\"",
                "unknown field",
            ),
        ] {
            let e = Acls::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
