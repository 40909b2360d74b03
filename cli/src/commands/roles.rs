//! `corral roles` and `corral weight`: roles as the master's allocator sees them
//! (Operator.GetRoles) and their weights in weighted DRF (Operator.SetWeight).

use corral_proto::v1;
use serde_json::json;

use crate::cli::{ListArgs, OutputFormat, WeightArgs};
use crate::client::{self, OperatorClient};
use crate::commands::Exit;
use crate::output;

/// Every role the master knows: those with a weight, a quota, a reservation or a framework.
pub(super) async fn fetch(client: &mut OperatorClient) -> anyhow::Result<Vec<v1::RoleSummary>> {
    Ok(client
        .get_roles(v1::GetRolesRequest {})
        .await
        .map_err(|s| client::refused("cannot list roles", &s))?
        .into_inner()
        .roles)
}

pub(super) async fn roles(args: ListArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    let roles = fetch(&mut client).await?;
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => output::print_doc(
            args.output,
            &json!({
                "roles": roles.iter().map(corral_proto::json::role).collect::<Vec<_>>()
            }),
        )?,
        OutputFormat::Table | OutputFormat::Wide => {
            let mut table = output::table(&[
                "ROLE",
                "WEIGHT",
                "GUARANTEE",
                "LIMIT",
                "ALLOCATED",
                "SHARE",
                "FRAMEWORKS",
            ]);
            for r in &roles {
                let quota = r.quota.as_ref();
                table.add_row(vec![
                    r.name.clone(),
                    r.weight.to_string(),
                    output::resources_nonzero(quota.and_then(|q| q.guarantee.as_ref())),
                    output::limits_short(quota.and_then(|q| q.limit.as_ref())),
                    output::resources_nonzero(r.allocated.as_ref()),
                    output::percent(r.dominant_share),
                    r.frameworks.to_string(),
                ]);
            }
            output::print_listing(&table, "no roles");
        }
    }
    Ok(0)
}

pub(super) async fn weight(args: WeightArgs) -> anyhow::Result<u8> {
    let mut client = client::operator(&args.master.master).await?;
    if let (Some(role), Some(weight)) = (&args.role, args.weight) {
        client
            .set_weight(v1::SetWeightRequest {
                role: role.clone(),
                weight,
            })
            .await
            .map_err(|s| client::refused(&format!("cannot set the weight of role {role}"), &s))?;
        println!("role {role}: weight {weight}");
        return Ok(0);
    }
    let mut roles = fetch(&mut client).await?;
    if let Some(role) = &args.role {
        roles.retain(|r| &r.name == role);
        if roles.is_empty() {
            return Err(Exit::invalid(format!(
                "unknown role {role}: no framework, weight, quota or reservation names it (every role weighs 1 until set)"
            ))
            .into());
        }
    }
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => output::print_doc(
            args.output,
            &json!({
                "weights": roles.iter().map(|r| json!({
                    "role": r.name,
                    "weight": r.weight,
                })).collect::<Vec<_>>()
            }),
        )?,
        OutputFormat::Table | OutputFormat::Wide => {
            let mut table = output::table(&["ROLE", "WEIGHT"]);
            for r in &roles {
                table.add_row(vec![r.name.clone(), r.weight.to_string()]);
            }
            output::print_listing(&table, "no roles");
        }
    }
    Ok(0)
}
