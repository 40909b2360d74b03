//! `corral agents`, `corral frameworks` and `corral modules`.

use corral_proto::v1;
use serde_json::json;

use crate::cli::{FrameworksArgs, ListArgs, OutputFormat};
use crate::{client, output};

pub(super) async fn agents(args: ListArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let agents = client
        .list_agents(v1::ListAgentsRequest {})
        .await?
        .into_inner()
        .agents;
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => output::print_doc(
            args.output,
            &json!({
                "agents": agents.iter().map(corral_proto::json::agent).collect::<Vec<_>>()
            }),
        )?,
        format @ (OutputFormat::Table | OutputFormat::Wide) => {
            let wide = format == OutputFormat::Wide;
            let mut header = vec![
                "AGENT",
                "ADDRESS",
                "STATE",
                "TOTAL",
                "USED",
                "TASKS",
                "HEARTBEAT",
            ];
            if wide {
                header.extend(["HOSTNAME", "VERSION", "ATTRIBUTES"]);
            }
            let mut table = output::table(&header);
            for a in &agents {
                let mut row = vec![
                    a.id.clone(),
                    a.address.clone(),
                    match a.drain_deadline_millis {
                        // When its tasks are killed, which an operator draining it waits on.
                        Some(deadline) => format!(
                            "{} (kills {})",
                            output::agent_state(a.state),
                            output::from_now(deadline)
                        ),
                        None => output::agent_state(a.state),
                    },
                    output::resources_short(a.total.as_ref()),
                    output::resources_short(a.used.as_ref()),
                    a.active_tasks.to_string(),
                    output::ago(a.last_heartbeat_millis),
                ];
                if wide {
                    let attributes: Vec<String> = a
                        .attributes
                        .iter()
                        .map(|attr| format!("{}={}", attr.key, attr.value))
                        .collect();
                    row.extend([a.hostname.clone(), a.version.clone(), attributes.join(",")]);
                }
                table.add_row(row);
            }
            output::print_listing(&table, "no agents");
        }
    }
    Ok(0)
}

pub(super) async fn frameworks(args: FrameworksArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.list.master.master).await?;
    let frameworks = client
        .list_frameworks(v1::ListFrameworksRequest {
            include_completed: args.all,
        })
        .await?
        .into_inner()
        .frameworks;
    match args.list.output {
        OutputFormat::Json | OutputFormat::Yaml => output::print_doc(
            args.list.output,
            &json!({
                "frameworks": frameworks.iter().map(corral_proto::json::framework).collect::<Vec<_>>()
            }),
        )?,
        OutputFormat::Table | OutputFormat::Wide => {
            let mut table = output::table(&[
                "FRAMEWORK",
                "NAME",
                "USER",
                "STATE",
                "ROLES",
                "ALLOCATED",
                "TASKS",
            ]);
            for f in &frameworks {
                table.add_row(vec![
                    f.id.clone(),
                    f.name.clone(),
                    f.user.clone(),
                    output::framework_state(f.state),
                    f.roles.join(","),
                    output::resources_short(f.allocated.as_ref()),
                    f.active_tasks.to_string(),
                ]);
            }
            output::print_listing(&table, "no frameworks");
        }
    }
    Ok(0)
}

pub(super) async fn modules(args: ListArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let modules = client
        .list_modules(v1::ListModulesRequest {})
        .await?
        .into_inner()
        .modules;
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => output::print_doc(
            args.output,
            &json!({
                "modules": modules.iter().map(corral_proto::json::module).collect::<Vec<_>>()
            }),
        )?,
        OutputFormat::Table | OutputFormat::Wide => {
            let mut table = output::table(&["MODULE", "SIZE", "TASKS", "AGENTS CACHING", "STORED"]);
            for m in &modules {
                table.add_row(vec![
                    m.digest.clone(),
                    crate::parse::show_bytes(m.size),
                    m.active_tasks.to_string(),
                    m.cached_on_agents.to_string(),
                    output::ago(m.stored_at_millis),
                ]);
            }
            output::print_listing(&table, "no modules");
        }
    }
    Ok(0)
}
