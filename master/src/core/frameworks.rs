//! Frameworks: subscription, failover, disconnection, removal and heartbeats.

use std::collections::BTreeSet;

use corral_proto::ServiceError;
use corral_types::{FrameworkId, FrameworkState, Reason, Role, Timestamp};

use super::{ConnId, Effect, Framework, FrameworkEvent, FrameworkInfo, MasterCore, Reply, refused};

impl MasterCore {
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        info: FrameworkInfo,
        suppressed: Vec<Role>,
        now: Timestamp,
    ) {
        match self.try_subscribe(conn, info, suppressed, now) {
            Ok(()) => self.effects.push(Effect::Reply(Reply::Done(Ok(())))),
            Err(e) => {
                self.effects.push(Effect::CloseFramework { conn });
                self.effects.push(Effect::Reply(Reply::Done(Err(e))));
            }
        }
    }

    fn try_subscribe(
        &mut self,
        conn: ConnId,
        info: FrameworkInfo,
        suppressed: Vec<Role>,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        if info.roles.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "framework_info.roles: a framework needs at least one role".into(),
            ));
        }
        if let Some(r) = suppressed.iter().find(|r| !info.roles.contains(r)) {
            return Err(ServiceError::InvalidArgument(format!(
                "suppressed_roles: {r} is not one of the framework's roles"
            )));
        }
        let before = info.id.as_ref().and_then(|id| self.framework_record_of(id));
        let existing = info.id.as_ref().and_then(|id| self.frameworks.get(id));
        let (id, registered_unix_millis) = match existing {
            Some(f) if f.state == FrameworkState::Completed => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "framework {} was removed and cannot re-subscribe",
                    f.id
                )));
            }
            // A placeholder (a framework known only from its agents' tasks) is adopted by
            // whoever subscribes with its ID.
            Some(f) if f.info.principal != info.principal && !self.placeholders.contains(&f.id) => {
                return Err(ServiceError::PermissionDenied(format!(
                    "framework {} belongs to another principal",
                    f.id
                )));
            }
            Some(f) => {
                let (id, old, registered) = (f.id.clone(), f.conn, f.registered_unix_millis);
                self.allocator
                    .update_framework_roles(&id, &info.roles, &suppressed)
                    .map_err(refused)?;
                self.allocator
                    .set_framework_active(&id, true)
                    .map_err(refused)?;
                if let Some(old) = old
                    && old != conn
                {
                    // Failover: the previous subscription ends; its offers are withdrawn.
                    for offer in self.offers_where(|o| o.framework == id) {
                        self.rescind_offer(&offer, false);
                    }
                    self.send_framework(
                        old,
                        FrameworkEvent::Error {
                            message: "framework failed over to a new subscription".into(),
                        },
                    );
                    self.effects.push(Effect::CloseFramework { conn: old });
                }
                tracing::info!(framework_id = %id, "framework re-subscribed");
                (id, registered)
            }
            None => {
                let id = match &info.id {
                    Some(id) => id.clone(),
                    None => self.new_id("F"),
                };
                self.allocator
                    .add_framework(id.clone(), &info.roles, &suppressed)
                    .map_err(refused)?;
                tracing::info!(framework_id = %id, name = %info.name, "framework subscribed");
                (id, self.unix_millis(now))
            }
        };
        let stream_id = format!("{}-stream{}", self.config.master_id, {
            self.next_id += 1;
            self.next_id
        });
        let interval = self.config.framework_heartbeat_interval;
        self.frameworks.insert(
            id.clone(),
            Framework {
                id: id.clone(),
                info: FrameworkInfo {
                    id: Some(id.clone()),
                    ..info
                },
                conn: Some(conn),
                stream_id: stream_id.clone(),
                state: FrameworkState::Active,
                registered_unix_millis,
                disconnected_unix_millis: None,
                failover_deadline: None,
                next_heartbeat: now.saturating_add(interval),
                suppressed: suppressed.into_iter().collect(),
            },
        );
        self.placeholders.remove(&id);
        // Recorded before SUBSCRIBED: a restarted master knows the ID it handed out.
        self.persist_framework(&id, before);
        self.send_framework(
            conn,
            FrameworkEvent::Subscribed {
                framework: id.clone(),
                stream_id,
                heartbeat_interval: interval,
            },
        );
        // Updates the framework has not acknowledged (it may have missed them while away).
        let pending: Vec<_> = self
            .tasks
            .of_framework(&id)
            .iter()
            .filter_map(|key| self.tasks.get(key)?.unacked.clone())
            .collect();
        for status in pending {
            self.redeliver(status);
        }
        self.allocate_soon();
        Ok(())
    }

    /// The framework's stream ended: its offers are withdrawn and it has its failover
    /// timeout to come back.
    pub(super) fn framework_disconnected(&mut self, conn: ConnId, now: Timestamp) {
        // The runtime forgets the stream's sender whatever the core knew of it.
        self.effects.push(Effect::CloseFramework { conn });
        let Some(id) = self
            .frameworks
            .values()
            .find(|f| f.conn == Some(conn))
            .map(|f| f.id.clone())
        else {
            return;
        };
        let before = self.framework_record_of(&id);
        let disconnected = self.unix_millis(now);
        let Some(f) = self.frameworks.get_mut(&id) else {
            return;
        };
        f.conn = None;
        f.state = FrameworkState::Disconnected;
        f.disconnected_unix_millis = Some(disconnected);
        f.failover_deadline = Some(now.saturating_add(f.info.failover_timeout));
        // The failover timeout keeps running across a master restart.
        self.persist_framework(&id, before);
        tracing::info!(framework_id = %id, "framework disconnected");
        let inactive = self.allocator.set_framework_active(&id, false);
        self.allocator_agrees("pausing a disconnected framework", inactive);
        for offer in self.offers_where(|o| o.framework == id) {
            self.rescind_offer(&offer, false);
        }
        if f_timeout_is_zero(self.frameworks.get(&id)) {
            self.remove_framework(&id, "framework disconnected with no failover timeout");
        }
    }

    /// Heartbeats to active frameworks; removal of frameworks past their failover timeout.
    pub(super) fn check_frameworks(&mut self, now: Timestamp) {
        let mut expired: Vec<FrameworkId> = Vec::new();
        let mut beats: Vec<ConnId> = Vec::new();
        let interval = self.config.framework_heartbeat_interval;
        for f in self.frameworks.values_mut() {
            match (f.state, f.conn) {
                (FrameworkState::Active, Some(conn)) if f.next_heartbeat <= now => {
                    f.next_heartbeat = now.saturating_add(interval);
                    beats.push(conn);
                }
                (FrameworkState::Disconnected, _)
                    if f.failover_deadline.is_some_and(|d| d <= now) =>
                {
                    expired.push(f.id.clone());
                }
                _ => {}
            }
        }
        beats.sort_unstable();
        for conn in beats {
            self.send_framework(conn, FrameworkEvent::Heartbeat);
        }
        expired.sort();
        for id in expired {
            self.remove_framework(&id, "framework did not fail over within its timeout");
        }
    }

    /// Tears a framework down: its tasks are killed, its offers withdrawn, its stream ended.
    pub(super) fn remove_framework(&mut self, id: &FrameworkId, why: &str) {
        tracing::info!(framework_id = %id, reason = why, "removing framework");
        let before = self.framework_record_of(id);
        if let Some(f) = self.frameworks.get_mut(id) {
            f.state = FrameworkState::Completed;
        }
        // Recorded first, so a restarted master still refuses the ID of a framework whose
        // tasks it has started killing.
        self.persist_framework(id, before);
        for offer in self.offers_where(|o| &o.framework == id) {
            self.offers.remove(&offer);
        }
        self.checkpoints.remove_framework(id);
        self.remove_kv(id);
        for key in self.tasks.of_framework(id) {
            let Some(t) = self.tasks.get_mut(&key) else {
                continue;
            };
            // The allocator releases everything the framework holds below.
            t.holds = false;
            if t.status.state.is_terminal() {
                self.complete_task(&key);
                continue;
            }
            let conn = self.tasks.get(&key).and_then(|t| self.agent_conn_of(t));
            if let Some(conn) = conn {
                self.send_kill(conn, id, &key.1, Reason::FrameworkRemoved);
            }
        }
        let removed = self.allocator.remove_framework(id);
        self.allocator_agrees("removing a framework", removed);
        if let Some(f) = self.frameworks.get_mut(id) {
            f.failover_deadline = None;
            if let Some(conn) = f.conn.take() {
                self.send_framework(
                    conn,
                    FrameworkEvent::Error {
                        message: format!("framework removed: {why}"),
                    },
                );
                self.effects.push(Effect::CloseFramework { conn });
            }
        }
        self.allocate_soon();
    }

    /// The framework's suppressed roles, for listings.
    pub(super) fn note_suppressed(&mut self, id: &FrameworkId, roles: &[Role], suppressed: bool) {
        let Some(f) = self.frameworks.get_mut(id) else {
            return;
        };
        let all: BTreeSet<Role> = if roles.is_empty() {
            f.info.roles.iter().cloned().collect()
        } else {
            roles.iter().cloned().collect()
        };
        for r in all {
            if suppressed {
                f.suppressed.insert(r);
            } else {
                f.suppressed.remove(&r);
            }
        }
    }
}

fn f_timeout_is_zero(f: Option<&Framework>) -> bool {
    f.is_some_and(|f| f.info.failover_timeout.is_zero())
}
