//! Tables (comfy-table) and JSON or YAML documents for listings.

use std::collections::BTreeMap;

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use corral_proto::v1;
use serde_json::Value;

use crate::cli::OutputFormat;
use crate::parse::show_bytes;

/// A table with `header`, in the CLI's style.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(header.to_vec());
    table
}

/// Prints a listing's table, or, when it has no rows, `none` on stderr (as kubectl says "No
/// resources found"): a header alone reads as an error, and stdout stays empty for scripts.
pub(crate) fn print_listing(table: &Table, none: &str) {
    if table.is_empty() {
        eprintln!("{none}");
    } else {
        println!("{table}");
    }
}

/// Prints one JSON document.
pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints one document as JSON, or as YAML for `-o yaml` (the same document).
pub(crate) fn print_doc(format: OutputFormat, value: &Value) -> anyhow::Result<()> {
    match format {
        OutputFormat::Yaml => {
            print!("{}", to_yaml(value));
            Ok(())
        }
        _ => print_json(value),
    }
}

/// A JSON value as block-style YAML. Strings are written double-quoted with JSON's escapes
/// (valid YAML 1.2), so no value can be misread as a number, a boolean or null; keys made of
/// letters, digits, `_`, `-` and `.` are written bare.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => yaml_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => yaml_list(&mut out, items, 0),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        // JSON's rendering of strings, numbers, booleans and null is valid YAML.
        other => other.to_string(),
    }
}

fn yaml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if bare {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

fn is_block(value: &Value) -> bool {
    matches!(value, Value::Object(m) if !m.is_empty())
        || matches!(value, Value::Array(a) if !a.is_empty())
}

fn yaml_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&yaml_key(key));
        out.push(':');
        yaml_value(out, value, indent + 2);
    }
}

fn yaml_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        match item {
            // A table in a list starts on the dash's line: `- id: "a-1"`.
            Value::Object(map) if !map.is_empty() => {
                let mut inner = String::new();
                yaml_map(&mut inner, map, indent + 2);
                out.push_str("- ");
                out.push_str(&inner[indent + 2..]);
            }
            _ => {
                out.push('-');
                yaml_value(out, item, indent + 2);
            }
        }
    }
}

/// A value after `key:` or `-`, on the same line if scalar, else on the lines below.
fn yaml_value(out: &mut String, value: &Value, indent: usize) {
    if !is_block(value) {
        out.push(' ');
        out.push_str(&yaml_scalar(value));
        out.push('\n');
        return;
    }
    out.push('\n');
    match value {
        Value::Object(map) => yaml_map(out, map, indent),
        Value::Array(items) => yaml_list(out, items, indent),
        _ => {}
    }
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

/// The non-zero kinds only, custom scalars included: `2 cpu, 4 GiB mem, 1 gpu`; `-` when
/// empty (a guarantee of nothing, a role holding nothing).
pub(crate) fn resources_nonzero(r: Option<&v1::Resources>) -> String {
    let Some(r) = r else { return "-".into() };
    let parts = [
        (r.cpus_milli > 0).then(|| format!("{} cpu", cpus(r.cpus_milli))),
        (r.mem_bytes > 0).then(|| format!("{} mem", show_bytes(r.mem_bytes))),
        (r.disk_bytes > 0).then(|| format!("{} disk", show_bytes(r.disk_bytes))),
    ];
    join_or_dash(parts.into_iter().flatten().chain(scalars(&r.scalars_milli)))
}

/// The bounded kinds of quota limits: `8 cpu, 0 B disk`; `-` when nothing is bounded.
pub(crate) fn limits_short(l: Option<&v1::ResourceLimits>) -> String {
    let Some(l) = l else { return "-".into() };
    let parts = [
        l.cpus_milli.map(|v| format!("{} cpu", cpus(v))),
        l.mem_bytes.map(|v| format!("{} mem", show_bytes(v))),
        l.disk_bytes.map(|v| format!("{} disk", show_bytes(v))),
    ];
    join_or_dash(parts.into_iter().flatten().chain(scalars(&l.scalars_milli)))
}

/// Custom scalars in milli-units, by name: `1 gpu`.
fn scalars(milli: &BTreeMap<String, u64>) -> impl Iterator<Item = String> + '_ {
    milli.iter().map(|(name, &v)| format!("{} {name}", cpus(v)))
}

fn join_or_dash(parts: impl Iterator<Item = String>) -> String {
    let text = parts.collect::<Vec<_>>().join(", ");
    if text.is_empty() { "-".into() } else { text }
}

/// A share from 0 to 1 as a percentage: `25.0%`.
pub(crate) fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

pub(crate) use corral_proto::json::{
    agent_state, framework_state, limits as limits_json, reason, resources as resources_json,
    task_state,
};

/// Milliseconds since the epoch as "12s ago".
/// A time to come or past, as RFC 3339 in UTC (`2027-01-01T00:20:00Z`).
pub(crate) fn at(millis: u64) -> String {
    i64::try_from(millis)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || millis.to_string(),
            |t| {
                t.round(jiff::Unit::Second)
                    .map_or_else(|_| t.to_string(), |t| t.to_string())
            },
        )
}

pub(crate) fn ago(millis: u64) -> String {
    if millis == 0 {
        return "-".into();
    }
    format!("{} ago", span(now_millis().saturating_sub(millis)))
}

/// A time to come, in milliseconds since the Unix epoch, as "in 9m" ("now" once past).
pub(crate) fn from_now(millis: u64) -> String {
    match millis.saturating_sub(now_millis()) {
        0 => "now".into(),
        ahead => format!("in {}", span(ahead)),
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A span of milliseconds in its largest whole unit: "42s", "9m", "2h", "3d".
fn span(millis: u64) -> String {
    let secs = millis / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_is_the_json_document_in_block_style() {
        let doc = json!({"agents": [{"id": "a-1", "total": {"cpus_milli": 2000}, "tags": []}], "odd key": "yes", "n": null});
        assert_eq!(
            to_yaml(&doc),
            "agents:\n  - id: \"a-1\"\n    tags: []\n    total:\n      cpus_milli: 2000\nn: null\n\"odd key\": \"yes\"\n"
        );
        assert_eq!(to_yaml(&json!([])), "[]\n");
    }
}
