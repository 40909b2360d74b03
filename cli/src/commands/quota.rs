//! `corral quota [list | set | remove]`: role quotas through Operator.GetRoles, SetQuota and
//! RemoveQuota.

use corral_proto::v1;
use serde_json::json;

use crate::cli::{ListArgs, OutputFormat, QuotaArgs, QuotaCommand, QuotaSetArgs, RoleArgs};
use crate::commands::{Exit, roles};
use crate::parse::ResourceSpec;
use crate::{client, output};

pub(super) async fn run(args: QuotaArgs) -> anyhow::Result<u8> {
    match args.command {
        None => list(args.list).await,
        Some(QuotaCommand::List(list_args)) => list(list_args).await,
        Some(QuotaCommand::Set(set_args)) => set(set_args).await,
        Some(QuotaCommand::Remove(role_args)) => remove(role_args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let mut roles = roles::fetch(&mut client).await?;
    roles.retain(|r| r.quota.is_some());
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => output::print_doc(
            args.output,
            &json!({ "quotas": roles.iter().map(quota_json).collect::<Vec<_>>() }),
        )?,
        OutputFormat::Table | OutputFormat::Wide => {
            let mut table = output::table(&["ROLE", "GUARANTEE", "LIMIT", "CONSUMED"]);
            for r in &roles {
                let quota = r.quota.as_ref();
                table.add_row(vec![
                    r.name.clone(),
                    output::resources_nonzero(quota.and_then(|q| q.guarantee.as_ref())),
                    output::limits_short(quota.and_then(|q| q.limit.as_ref())),
                    output::resources_nonzero(r.consumed.as_ref()),
                ]);
            }
            output::print_listing(&table, "no quotas");
        }
    }
    Ok(0)
}

/// A role's quota as listings write it.
fn quota_json(r: &v1::RoleSummary) -> serde_json::Value {
    let quota = r.quota.as_ref();
    json!({
        "role": r.name,
        "guarantee": output::resources_json(quota.and_then(|q| q.guarantee.as_ref())),
        "limit": output::limits_json(quota.and_then(|q| q.limit.as_ref())),
        "consumed": output::resources_json(r.consumed.as_ref()),
    })
}

async fn set(args: QuotaSetArgs) -> anyhow::Result<u8> {
    let role = &args.role;
    if args.guarantee.is_none() && args.limit.is_none() {
        return Err(Exit::invalid(
            "give --guarantee, --limit or both (e.g. --guarantee cpus=2,mem=4GiB --limit cpus=8)",
        )
        .into());
    }
    // `--limit ""` is a mistake, not "unlimited".
    for (flag, spec) in [("--guarantee", &args.guarantee), ("--limit", &args.limit)] {
        if spec.as_ref().is_some_and(ResourceSpec::is_empty) {
            return Err(Exit::invalid(format!(
                "{flag} names no resources (expected e.g. cpus=2,mem=4GiB)"
            ))
            .into());
        }
    }
    let quota = v1::Quota {
        guarantee: args.guarantee.as_ref().map(ResourceSpec::to_proto),
        limit: args.limit.map(|l| v1::ResourceLimits {
            cpus_milli: l.cpus_milli,
            mem_bytes: l.mem_bytes,
            disk_bytes: l.disk_bytes,
            ..Default::default()
        }),
    };
    let mut client = client::operator(&args.master.master).await?;
    client
        .set_quota(v1::SetQuotaRequest {
            role: role.clone(),
            quota: Some(quota.clone()),
            force: args.force,
        })
        .await
        .map_err(|s| client::refused(&format!("cannot set the quota of role {role}"), &s))?;
    if matches!(args.output, OutputFormat::Json | OutputFormat::Yaml) {
        let roles = roles::fetch(&mut client).await?;
        let Some(r) = roles.iter().find(|r| &r.name == role) else {
            anyhow::bail!("the master no longer lists role {role}");
        };
        output::print_doc(args.output, &quota_json(r))?;
        return Ok(0);
    }
    println!(
        "role {role}: quota set (guarantee: {}; limit: {})",
        output::resources_nonzero(quota.guarantee.as_ref()),
        output::limits_short(quota.limit.as_ref())
    );
    Ok(0)
}

async fn remove(args: RoleArgs) -> anyhow::Result<u8> {
    let role = &args.role;
    let mut client = client::operator(&args.master.master).await?;
    client
        .remove_quota(v1::RemoveQuotaRequest { role: role.clone() })
        .await
        .map_err(|s| client::refused(&format!("cannot remove the quota of role {role}"), &s))?;
    println!("role {role}: quota removed");
    Ok(0)
}
