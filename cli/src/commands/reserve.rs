//! `corral reserve` and `corral unreserve`: dynamic reservations made by an operator, as
//! Mesos's RESERVE_RESOURCES / UNRESERVE_RESOURCES. Reserved resources are offered to the
//! role (and its sub-roles) only.

use corral_proto::v1;

use crate::cli::ReserveArgs;
use crate::commands::Exit;
use crate::{client, output};

pub(super) async fn reserve(args: ReserveArgs) -> anyhow::Result<u8> {
    let resources = resources(&args)?;
    let mut client = client::operator(&args.master.master).await?;
    client
        .reserve_resources(v1::ReserveResourcesRequest {
            agent_id: args.agent.clone(),
            role: args.role.clone(),
            resources: Some(resources.clone()),
        })
        .await
        .map_err(|s| client::refused(&format!("cannot reserve on agent {}", args.agent), &s))?;
    println!(
        "agent {}: {} reserved to role {}",
        args.agent,
        output::resources_nonzero(Some(&resources)),
        args.role
    );
    Ok(0)
}

pub(super) async fn unreserve(args: ReserveArgs) -> anyhow::Result<u8> {
    let resources = resources(&args)?;
    let mut client = client::operator(&args.master.master).await?;
    client
        .unreserve_resources(v1::UnreserveResourcesRequest {
            agent_id: args.agent.clone(),
            role: args.role.clone(),
            resources: Some(resources.clone()),
        })
        .await
        .map_err(|s| client::refused(&format!("cannot unreserve on agent {}", args.agent), &s))?;
    println!(
        "agent {}: {} of role {} unreserved",
        args.agent,
        output::resources_nonzero(Some(&resources)),
        args.role
    );
    Ok(0)
}

fn resources(args: &ReserveArgs) -> anyhow::Result<v1::Resources> {
    if args.resources.is_empty() {
        return Err(Exit::invalid("name the resources, e.g. cpus=1,mem=2GiB").into());
    }
    Ok(args.resources.to_proto())
}
