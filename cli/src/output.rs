//! Tables (comfy-table) and JSON documents for listings.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use corral_proto::v1;
use serde_json::{Value, json};

use crate::parse::show_bytes;

/// A table with `header`, in the CLI's style.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(header.to_vec());
    table
}

/// Prints one JSON document.
pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `cpus 1.5 mem 64 MiB disk 1 GiB`.
pub(crate) fn resources_short(r: Option<&v1::Resources>) -> String {
    let Some(r) = r else { return "-".into() };
    format!(
        "{} cpu, {} mem, {} disk",
        cpus(r.cpus_milli),
        show_bytes(r.mem_bytes),
        show_bytes(r.disk_bytes)
    )
}

/// Milli-CPUs as cores (`1.5`).
pub(crate) fn cpus(milli: u64) -> String {
    if milli.is_multiple_of(1000) {
        format!("{}", milli / 1000)
    } else {
        format!("{}.{:03}", milli / 1000, milli % 1000)
            .trim_end_matches('0')
            .to_owned()
    }
}

pub(crate) fn resources_json(r: Option<&v1::Resources>) -> Value {
    match r {
        Some(r) => json!({
            "cpus_milli": r.cpus_milli,
            "mem_bytes": r.mem_bytes,
            "disk_bytes": r.disk_bytes,
            "scalars_milli": r.scalars_milli,
        }),
        None => Value::Null,
    }
}

pub(crate) fn usage_json(u: Option<&v1::Usage>) -> Value {
    match u {
        Some(u) => json!({
            "fuel_consumed": u.fuel_consumed,
            "cpu_time_nanos": u.cpu_time_nanos,
            "peak_memory_bytes": u.peak_memory_bytes,
            "wall_time_nanos": u.wall_time_nanos,
            "exit_code": u.exit_code,
        }),
        None => Value::Null,
    }
}

/// A proto enum field as operators read it (`RUNNING`), `-` when unset, or its number if
/// this CLI does not know it.
fn enum_field<T: std::fmt::Display>(
    value: i32,
    parse: fn(&'static str, i32) -> Result<Option<T>, corral_proto::ProtoError>,
) -> String {
    match parse("", value) {
        Ok(Some(v)) => v.to_string(),
        Ok(None) => "-".into(),
        Err(_) => value.to_string(),
    }
}

pub(crate) fn task_state(value: i32) -> String {
    enum_field(value, corral_proto::TaskState::from_proto_opt)
}

pub(crate) fn reason(value: i32) -> String {
    enum_field(value, corral_proto::Reason::from_proto_opt)
}

pub(crate) fn agent_state(value: i32) -> String {
    enum_field(value, corral_proto::AgentState::from_proto_opt)
}

pub(crate) fn framework_state(value: i32) -> String {
    enum_field(value, corral_proto::FrameworkState::from_proto_opt)
}

/// Milliseconds since the epoch as "12s ago".
pub(crate) fn ago(millis: u64) -> String {
    if millis == 0 {
        return "-".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let secs = now.saturating_sub(millis) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}
