//! Weighted DRF through a real master: roles with weights 1 and 3 saturate a cluster of fake
//! agents and end near a 1:3 split of the dominant resource, read through Operator.GetRoles.

use std::collections::BTreeMap;
use std::time::Duration;

use corral_proto::{limits, v1};
use tokio::sync::mpsc;

use crate::util::{FakeAgent, RawScheduler, resources, start, task};

/// Fake agents of 2 cpus and 1 GiB each (FakeAgent's size).
const AGENTS: u64 = 4;
const AGENT_CPUS_MILLI: u64 = 2000;
/// Tasks of 0.1 cpu and 50 MiB: cpus are every role's dominant resource, and an agent running
/// 20 tasks has no cpu and 24 MiB left, below the minimum allocatable (32 MiB), so a
/// saturated cluster has no offer outstanding and the shares count tasks only.
const TASK_CPUS_MILLI: u64 = 100;
const TASK_MEM_BYTES: u64 = 50 << 20;
const TASKS_TO_SATURATE: u64 = AGENTS * AGENT_CPUS_MILLI / TASK_CPUS_MILLI;

/// Runs a fake agent that reports every task it is asked to launch as RUNNING, forever.
fn run_agent(mut agent: FakeAgent) {
    tokio::spawn(async move {
        let mut uuid = 0u8;
        while let Ok(Some(msg)) = agent.rx.message().await {
            if let Some(v1::master_message::Kind::LaunchTasks(launch)) = msg.kind {
                for t in &launch.tasks {
                    uuid = uuid.wrapping_add(1);
                    agent
                        .status(
                            &launch.framework_id,
                            &t.task_id,
                            v1::TaskState::Running,
                            uuid,
                        )
                        .await;
                }
            }
        }
    });
}

/// A launch in a role, or what went wrong.
type Launched = Result<&'static str, String>;

/// Runs a framework in `role` that launches one long-running task on every offer and hands
/// the rest back at once (`refuse_seconds: 0`), so each task goes to whichever role DRF
/// picks next. Reports each launch, or the first failure, on `launched`.
fn run_greedy_framework(
    mut fw: RawScheduler,
    role: &'static str,
    launched: mpsc::UnboundedSender<Launched>,
) {
    tokio::spawn(async move {
        let mut n = 0u32;
        loop {
            let v1::event::Kind::Offers(offers) = fw.next("OFFERS").await else {
                continue;
            };
            for offer in offers.offers {
                let result = if offer.role == role {
                    n += 1;
                    let mut t = task(&format!("{role}-{n}"), TASK_CPUS_MILLI);
                    t.resources = Some(resources(TASK_CPUS_MILLI, TASK_MEM_BYTES));
                    let accept = v1::call_request::Kind::Accept(v1::call_request::Accept {
                        offer_ids: vec![offer.id.clone()],
                        operations: vec![v1::Operation {
                            id: String::new(),
                            kind: Some(v1::operation::Kind::Launch(v1::operation::Launch {
                                tasks: vec![t],
                            })),
                        }],
                        filters: Some(v1::Filters {
                            refuse_seconds: Some(0.0),
                        }),
                    });
                    fw.call(accept)
                        .await
                        .map(|()| role)
                        .map_err(|s| format!("{role}: accept refused: {s}"))
                } else {
                    Err(format!("{role}: offered in role {:?}", offer.role))
                };
                let failed = result.is_err();
                // The test has ended when nobody listens any more.
                if launched.send(result).is_err() || failed {
                    return;
                }
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_1_and_3_saturate_the_cluster_near_a_1_to_3_split() {
    let m = start().await;
    let mut operator = limits::operator_client(m.channel.clone());
    for (role, weight) in [("light", 1.0), ("heavy", 3.0)] {
        operator
            .set_weight(v1::SetWeightRequest {
                role: role.into(),
                weight,
            })
            .await
            .unwrap();
    }
    for _ in 0..AGENTS {
        run_agent(FakeAgent::register(m.channel.clone()).await);
    }
    let (launched_tx, mut launched) = mpsc::unbounded_channel();
    for role in ["light", "heavy"] {
        let fw = RawScheduler::subscribe_as(m.channel.clone(), role).await;
        run_greedy_framework(fw, role, launched_tx.clone());
    }

    // Saturated once every 0.1 cpu of the cluster runs a task.
    let mut tasks: BTreeMap<&str, u64> = BTreeMap::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.values().sum::<u64>() < TASKS_TO_SATURATE {
            match launched.recv().await {
                Some(Ok(role)) => *tasks.entry(role).or_default() += 1,
                Some(Err(e)) => panic!("{e}"),
                None => panic!("the frameworks stopped"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the cluster did not saturate within 30 s: {tasks:?}"));

    let roles = operator
        .get_roles(v1::GetRolesRequest {})
        .await
        .unwrap()
        .into_inner()
        .roles;
    let share = |name: &str| {
        let r = roles
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no role {name} in {roles:?}"));
        (
            r.dominant_share,
            r.allocated.as_ref().map_or(0, |a| a.cpus_milli),
        )
    };
    let (light, light_cpus) = share("light");
    let (heavy, heavy_cpus) = share("heavy");
    // Every cpu is allocated, to tasks only (no offer is outstanding on a full cluster).
    assert_eq!(
        light_cpus + heavy_cpus,
        AGENTS * AGENT_CPUS_MILLI,
        "{tasks:?} {roles:?}"
    );
    assert!(
        (light - 0.25).abs() <= 0.05,
        "light {light}, heavy {heavy}: {tasks:?}"
    );
    assert!(
        (heavy - 0.75).abs() <= 0.05,
        "light {light}, heavy {heavy}: {tasks:?}"
    );
}
