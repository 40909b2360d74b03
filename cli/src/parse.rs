//! Parsers for command-line values: CPUs, byte sizes, durations, `k=v` pairs, roles and
//! weights.

use std::time::Duration;

/// A set of resource amounts: `--resources` of `corral agent`, `--guarantee` and `--limit` of
/// `corral quota set`. A kind that is not named is `None`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceSpec {
    pub(crate) cpus_milli: Option<u64>,
    pub(crate) mem_bytes: Option<u64>,
    pub(crate) disk_bytes: Option<u64>,
}

impl ResourceSpec {
    /// True when no kind is named.
    pub(crate) fn is_empty(&self) -> bool {
        self.cpus_milli.is_none() && self.mem_bytes.is_none() && self.disk_bytes.is_none()
    }

    /// The named amounts as resources (kinds not named are zero).
    pub(crate) fn to_proto(&self) -> corral_proto::v1::Resources {
        corral_proto::v1::Resources {
            cpus_milli: self.cpus_milli.unwrap_or(0),
            mem_bytes: self.mem_bytes.unwrap_or(0),
            disk_bytes: self.disk_bytes.unwrap_or(0),
            ..Default::default()
        }
    }
}

/// Fractional CPUs to milli-CPUs: `0.5` is 500. Zero is refused: a task needs some CPU.
pub(crate) fn cpus(s: &str) -> Result<u64, String> {
    match cpu_amount(s)? {
        0 => Err(format!("invalid CPU count {s:?} (must be at least 0.001)")),
        milli => Ok(milli),
    }
}

/// Fractional CPUs to milli-CPUs, zero allowed (a quota limit of `cpus=0` allows none).
fn cpu_amount(s: &str) -> Result<u64, String> {
    corral_types::quantity::parse_cpus_milli(s)
}

/// A byte size: `512MiB`, `2GiB`, `64MB`, `1024` (bytes), `10k`.
pub(crate) fn bytes(s: &str) -> Result<u64, String> {
    corral_types::quantity::parse_bytes(s)
}

/// A duration: `10s`, `500ms`, `2m`, `1h`, or plain seconds.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    corral_types::quantity::parse_duration(s)
}

/// `sha256:<hex>=PATH`: an artifact given to a task as input file `PATH`.
pub(crate) fn artifact_input(s: &str) -> Result<(corral_types::Digest, String), String> {
    let (digest, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not sha256:<hex>=PATH"))?;
    let digest = digest.parse().map_err(|e| format!("{digest:?}: {e}"))?;
    if path.is_empty() {
        return Err(format!("{s:?} names no PATH"));
    }
    Ok((digest, path.to_owned()))
}

/// A task state by name, in any case: `running`, `FINISHED`.
pub(crate) fn task_state(s: &str) -> Result<corral_types::TaskState, String> {
    corral_types::TaskState::from_name(&s.to_ascii_uppercase()).ok_or_else(|| {
        let names: Vec<&str> = corral_types::TaskState::ALL
            .iter()
            .map(|s| s.name())
            .collect();
        format!("{s:?} is not a task state ({})", names.join(", "))
    })
}

/// `key=value`.
pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `K=V`, or `K` alone for this process's value of `K` (as `wasmtime run --env K`).
pub(crate) fn env_var(s: &str) -> Result<(String, String), String> {
    if s.contains('=') {
        return key_value(s);
    }
    match std::env::var(s) {
        Ok(value) if !s.is_empty() => Ok((s.to_owned(), value)),
        _ => Err(format!("{s:?} is not set here; give KEY=VALUE")),
    }
}

/// `cpus=1.5,mem=2GiB,disk=10GiB` (any subset, each kind at most once, zero allowed).
pub(crate) fn resources(s: &str) -> Result<ResourceSpec, String> {
    let mut spec = ResourceSpec::default();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = key_value(part.trim())?;
        let (slot, value) = match k.as_str() {
            "cpus" => (&mut spec.cpus_milli, cpu_amount(&v)?),
            "mem" => (&mut spec.mem_bytes, bytes(&v)?),
            "disk" => (&mut spec.disk_bytes, bytes(&v)?),
            other => {
                return Err(format!(
                    "unknown resource {other:?} (expected cpus, mem or disk)"
                ));
            }
        };
        if slot.replace(value).is_some() {
            return Err(format!("resource {k:?} is given twice in {s:?}"));
        }
    }
    Ok(spec)
}

/// One of wasmtime's `-W` options that `corral run` takes, as its own limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WasmOption {
    /// `fuel=N`: `--max-fuel`.
    Fuel(u64),
    /// `max-memory-size=BYTES`: `--mem`.
    MaxMemorySize(u64),
    /// `timeout=DURATION`: `--timeout`.
    Timeout(Duration),
}

/// One `-W` as given: its options in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WasmOptions(pub(crate) Vec<WasmOption>);

/// One `-S` as given: its options in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WasiOptions(pub(crate) Vec<WasiOption>);

/// wasmtime's `-W KEY=VALUE,...` (the options `corral run` takes: fuel, max-memory-size,
/// timeout).
pub(crate) fn wasm_options(s: &str) -> Result<WasmOptions, String> {
    wasmtime_options(s, |key, value| {
        let value = value.ok_or_else(|| format!("-W {key} needs a value ({key}=...)"))?;
        let bad = |e: String| format!("-W {key}={value}: {e}");
        Ok(match key {
            "fuel" => WasmOption::Fuel(
                value
                    .parse()
                    .map_err(|_| bad("not a whole number".into()))?,
            ),
            "max-memory-size" => WasmOption::MaxMemorySize(bytes(value).map_err(bad)?),
            "timeout" => WasmOption::Timeout(duration(value).map_err(bad)?),
            other => {
                return Err(format!(
                    "-W {other}: corral run takes wasmtime's fuel, max-memory-size and \
                     timeout (the agent decides how modules are compiled and which proposals \
                     they may use)"
                ));
            }
        })
    })
    .map(WasmOptions)
}

/// One of wasmtime's `-S` options that `corral run` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WasiOption {
    /// `inherit-env[=y|n]`: the task gets this shell's whole environment.
    InheritEnv(bool),
}

/// wasmtime's `-S KEY[=VALUE],...` (the option `corral run` takes: inherit-env).
pub(crate) fn wasi_options(s: &str) -> Result<WasiOptions, String> {
    wasmtime_options(s, |key, value| match key {
        "inherit-env" => {
            let on = match value {
                None | Some("y" | "yes" | "true") => true,
                Some("n" | "no" | "false") => false,
                Some(other) => return Err(format!("-S inherit-env={other}: y or n")),
            };
            Ok(WasiOption::InheritEnv(on))
        }
        other => Err(format!(
            "-S {other}: corral run takes wasmtime's inherit-env (a task gets the WASI its \
             agent gives: preview 1, and 0.2 for components)"
        )),
    })
    .map(WasiOptions)
}

/// `KEY[=VALUE],...` as wasmtime spells its option groups, each parsed by `option`.
fn wasmtime_options<T>(
    s: &str,
    option: impl Fn(&str, Option<&str>) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    s.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| match part.trim().split_once('=') {
            Some((key, value)) => option(key, Some(value)),
            None => option(part.trim(), None),
        })
        .collect()
}

/// A role name (`eng`, `eng/batch`, `*`), checked by the same rules as the master's.
pub(crate) fn role(s: &str) -> Result<String, String> {
    corral_proto::convert::parse_role("role", s)
        .map(|r| r.to_string())
        .map_err(|e| e.to_string())
}

/// A static reservation `ROLE:cpus=1,mem=2GiB`.
pub(crate) fn reservation(s: &str) -> Result<(String, ResourceSpec), String> {
    let (name, amounts) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid reservation {s:?} (expected ROLE:cpus=1,mem=2GiB)"))?;
    let name = role(name)?;
    if name == "*" {
        return Err("resources cannot be reserved to the default role *".into());
    }
    let spec = resources(amounts)?;
    if spec.is_empty() {
        return Err(format!("reservation {s:?} names no resources"));
    }
    Ok((name, spec))
}

/// A DRF weight, checked by the same rules as the master's.
pub(crate) fn weight(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid weight {s:?} (expected a number such as 1, 2.5 or 0.5)"))?;
    corral_proto::convert::parse_weight("weight", value)
        .map(|w| w.get())
        .map_err(|e| e.to_string())
}

/// Bytes for people: exact in the largest unit that divides them (`64 MiB`), else to one
/// decimal in the largest unit they reach (`20.9 GiB`).
pub(crate) fn show_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let unit = (0..UNITS.len())
        .rev()
        .find(|&u| b >= 1u64 << (10 * u))
        .unwrap_or(0);
    let scale = 1u64 << (10 * unit);
    if b.is_multiple_of(scale) {
        format!("{} {}", b / scale, UNITS[unit])
    } else {
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let value = b as f64 / scale as f64;
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmtime_option_groups_parse_as_wasmtime_spells_them() {
        assert_eq!(
            wasm_options("fuel=1000, max-memory-size=1048576,timeout=2"),
            Ok(WasmOptions(vec![
                WasmOption::Fuel(1000),
                WasmOption::MaxMemorySize(1 << 20),
                WasmOption::Timeout(Duration::from_secs(2)),
            ]))
        );
        assert_eq!(
            wasm_options("max-memory-size=64MiB,timeout=500ms"),
            Ok(WasmOptions(vec![
                WasmOption::MaxMemorySize(64 << 20),
                WasmOption::Timeout(Duration::from_millis(500)),
            ]))
        );
        let refused = |s: &str| wasm_options(s).unwrap_err();
        assert!(refused("fuel").contains("needs a value"));
        assert!(refused("fuel=-1").contains("not a whole number"));
        assert!(refused("timeout=soon").starts_with("-W timeout=soon: "));
        assert!(refused("opt-level=2").contains("takes wasmtime's fuel"));

        assert_eq!(
            wasi_options("inherit-env"),
            Ok(WasiOptions(vec![WasiOption::InheritEnv(true)]))
        );
        assert_eq!(
            wasi_options("inherit-env=n,inherit-env=yes"),
            Ok(WasiOptions(vec![
                WasiOption::InheritEnv(false),
                WasiOption::InheritEnv(true)
            ]))
        );
        assert!(wasi_options("inherit-env=maybe").is_err());
        assert!(
            wasi_options("tcp")
                .unwrap_err()
                .contains("takes wasmtime's inherit-env")
        );
    }

    #[test]
    fn parses_values() {
        assert_eq!(cpus("0.5"), Ok(500));
        assert_eq!(cpus("2"), Ok(2000));
        assert!(cpus("-1").is_err());
        assert!(cpus("0").is_err());
        assert!(cpus("abc").is_err());
        assert_eq!(bytes("512MiB"), Ok(512 << 20));
        assert_eq!(bytes("2GiB"), Ok(2 << 30));
        assert_eq!(bytes("1024"), Ok(1024));
        assert!(bytes("12XB").is_err());
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration("5y").is_err());
        assert_eq!(show_bytes(64 << 20), "64 MiB");
        let (r, spec) = reservation("eng/batch:cpus=1,mem=2GiB").unwrap();
        assert_eq!(
            (r.as_str(), spec.cpus_milli, spec.mem_bytes),
            ("eng/batch", Some(1000), Some(2 << 30))
        );
        assert!(reservation("*:cpus=1").is_err());
        assert!(reservation("eng").is_err());
        assert!(reservation("eng:").is_err());
        assert_eq!(show_bytes(0), "0 B");
        assert_eq!(show_bytes(1000), "1000 B");
        assert_eq!(show_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(show_bytes(21_899_032 << 10), "20.9 GiB");
        let r = resources("cpus=1.5,mem=2GiB").map_err(|e| e.to_string());
        assert!(
            matches!(r, Ok(ResourceSpec { cpus_milli: Some(1500), mem_bytes: Some(m), disk_bytes: None }) if m == 2 << 30)
        );
    }

    #[test]
    fn resources_allow_zero_and_refuse_repeats_and_unknown_kinds() {
        let r = resources("cpus=0,mem=0").map_err(|e| e.to_string());
        assert!(
            matches!(
                r,
                Ok(ResourceSpec {
                    cpus_milli: Some(0),
                    mem_bytes: Some(0),
                    disk_bytes: None
                })
            ),
            "{r:?}"
        );
        let repeated = resources("cpus=1,cpus=2").unwrap_err();
        assert!(repeated.contains("given twice"), "{repeated}");
        let unknown = resources("cpu=1").unwrap_err();
        assert!(unknown.contains("unknown resource \"cpu\""), "{unknown}");
        assert!(resources("cpus=-1").is_err());
        assert!(resources("cpus=1e9").is_err());
        assert!(resources("mem=lots").is_err());
        assert!(resources("cpus").is_err());
    }

    #[test]
    fn roles_and_weights() {
        assert_eq!(role("eng/batch"), Ok("eng/batch".to_owned()));
        assert_eq!(role("*"), Ok("*".to_owned()));
        for bad in ["", "/eng", "eng//batch", "a b", "eng/.."] {
            assert!(role(bad).is_err(), "{bad:?}");
        }
        assert_eq!(weight("3"), Ok(3.0));
        assert_eq!(weight("0.5"), Ok(0.5));
        for bad in ["0", "-1", "nan", "inf", "1e300", "heavy"] {
            let err = weight(bad).unwrap_err();
            assert!(err.contains("weight"), "{bad}: {err}");
        }
    }
}
