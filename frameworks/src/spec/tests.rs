use super::*;

const SMALLEST: &str = r#"version = 1
name = "hello-batch"
kind = "batch"            # batch | service | cron
module = "hello.wasm"     # path, sha256:<hex> or URL
instances = 200
[resources]
cpus = 0.1
mem = "32MiB"
"#;

fn one(source: &str, format: Format) -> JobSpec {
    let mut jobs = parse(source, format, "job").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jobs.len(), 1);
    jobs.remove(0)
}

/// The errors of an invalid spec, as `line:column: path: message` lines.
fn errors(source: &str, format: Format) -> Vec<String> {
    match parse(source, format, "job") {
        Ok(jobs) => panic!("accepted: {jobs:?}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_smallest_spec_reads_the_same_in_every_format() {
    let toml = one(SMALLEST, Format::Toml);
    assert_eq!(toml.name, "hello-batch");
    assert_eq!(toml.module, ModuleRef::Path("hello.wasm".into()));
    assert_eq!(toml.resources.cpus_milli(), 100);
    assert_eq!(toml.resources.mem_bytes(), 32 << 20);
    assert_eq!(toml.resources.disk_bytes(), 64 << 20);
    let JobKind::Batch(batch) = &toml.kind else {
        panic!("{toml:?}")
    };
    assert_eq!((batch.instances, batch.retries), (200, 3));
    let yaml = "version: 1\nname: hello-batch\nkind: batch\nmodule: hello.wasm\ninstances: 200\n\
                resources:\n  cpus: 0.1\n  mem: 32MiB\n";
    assert_eq!(one(yaml, Format::Yaml), toml);
    let json = r#"{"version": 1, "name": "hello-batch", "kind": "batch", "module": "hello.wasm",
        "instances": 200, "resources": {"cpus": 0.1, "mem": "32MiB"}}"#;
    assert_eq!(one(json, Format::Json), toml);
}

#[test]
fn a_service_and_a_cron_job_add_only_their_kind_and_schedule() {
    let service = SMALLEST
        .replace("\"batch\"", "\"service\"")
        .replace("instances = 200", "instances = 3");
    let JobKind::Service(s) = one(&service, Format::Toml).kind else {
        panic!()
    };
    assert_eq!(s.instances, 3);
    assert_eq!(s.backoff.factor, 1.15);
    let cron = SMALLEST.replace("\"batch\"", "\"cron\"").replace(
        "instances = 200",
        "schedule = \"*/5 * * * 1-5\"\ntimezone = \"Europe/Paris\"",
    );
    let JobKind::Cron(c) = one(&cron, Format::Toml).kind else {
        panic!()
    };
    assert_eq!(c.schedule, Schedule::Cron("*/5 * * * 1-5".into()));
    assert_eq!(c.timezone, "Europe/Paris");
    let every = SMALLEST.replace("\"batch\"", "\"cron\"").replace(
        "instances = 200",
        "schedule = \"R/2027-01-01T00:00:00Z/PT10S\"",
    );
    let JobKind::Cron(c) = one(&every, Format::Toml).kind else {
        panic!()
    };
    assert_eq!(
        c.schedule,
        Schedule::Every {
            start: "2027-01-01T00:00:00Z".parse().unwrap(),
            every: Duration::from_secs(10),
            repetitions: None,
        }
    );
}

#[test]
fn a_services_update_bounds_read_with_their_defaults_and_limits() {
    let service = SMALLEST
        .replace("\"batch\"", "\"service\"")
        .replace("instances = 200", "instances = 3");
    let JobKind::Service(s) = one(&service, Format::Toml).kind else {
        panic!()
    };
    assert_eq!(s.update, UpdatePolicy::default());
    assert_eq!(
        (
            s.update.max_unavailable,
            s.update.max_surge,
            s.update.rollback_after
        ),
        (0, 1, 3)
    );
    let bounded = format!(
        "{service}[update]\nmax_unavailable = 2\nmax_surge = 0\nmin_running = \"5s\"\n\
         rollback_after = 0\n"
    );
    let JobKind::Service(s) = one(&bounded, Format::Toml).kind else {
        panic!()
    };
    assert_eq!(
        s.update,
        UpdatePolicy {
            max_unavailable: 2,
            max_surge: 0,
            min_running: Duration::from_secs(5),
            rollback_after: 0,
        }
    );
    let stuck = format!("{service}[update]\nmax_unavailable = 0\nmax_surge = 0\nmin_runing = 1\n");
    let errors = errors(&stuck, Format::Toml);
    assert!(
        errors.iter().any(|e| e.contains("cannot both be 0")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("min_running")),
        "the misspelt field is named with the closest one: {errors:?}"
    );
}

#[test]
fn every_field_reads() {
    let full = r#"
version = 1
name = "etl"
kind = "batch"
module = { url = "https://example.com/etl.wasm", digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000" }
args = ["--fast", "3"]
env = { MODE = "full", LEVEL = 2 }
secret_env = { DB_PASSWORD = "hunter2" }
role = "eng/batch"
labels = { team = "data" }
placement = "spread"
tier = "preemptible"
instances = 4
retries = 0
max_failures = 2
depends_on = ["extract"]
backoff = { initial = "500ms", factor = 1.5, max = "PT1M" }
constraints = [["hostname", "UNIQUE"], ["zone", "GROUP_BY", "3"], ["arch", "LIKE", "x86_.*"], ["rack", "MAX_PER", "2"]]
inputs = [
  { path = "in/data.csv", file = "data.csv" },
  { path = "in/ref.bin", artifact = "sha256:1111111111111111111111111111111111111111111111111111111111111111" },
  { path = "in/parts", from = "extract", output = "part.csv" },
]
[resources]
cpus = 2
mem = 128
disk = "1GiB"
[limits]
max_fuel = 1000000
timeout = "10m"
max_output = "4MiB"
"#;
    let job = one(full, Format::Toml);
    assert!(matches!(
        &job.module,
        ModuleRef::Url {
            digest: Some(_),
            ..
        }
    ));
    assert_eq!(
        job.env,
        [
            corral_proto::EnvVar::plain("MODE", "full"),
            corral_proto::EnvVar::plain("LEVEL", "2"),
            corral_proto::EnvVar::secret("DB_PASSWORD", "hunter2"),
        ]
    );
    let shown = format!("{job:?}");
    assert!(
        shown.contains("DB_PASSWORD") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert_eq!(
        job.resources.mem_bytes(),
        128 << 20,
        "a number is MiB, as Marathon's"
    );
    assert_eq!(job.placement, Placement::Spread);
    assert_eq!(job.tier, Tier::Preemptible);
    assert_eq!(job.constraints.len(), 4);
    assert!(
        matches!(&job.constraints[2].operator, Operator::Like(re) if re.is_match("x86_64") && !re.is_match("arm-x86_64"))
    );
    assert_eq!(job.limits.timeout, Some(Duration::from_secs(600)));
    assert_eq!(
        job.inputs[2].source,
        InputSource::Job {
            job: "extract".into(),
            output: Some("part.csv".into())
        }
    );
    let JobKind::Batch(b) = job.kind else {
        panic!()
    };
    assert_eq!(b.backoff.max, Duration::from_secs(60));
    assert_eq!(b.max_failures, Some(2));
}

#[test]
fn invalid_specs_name_the_line_column_and_field() {
    let spec = r#"version = 1
name = "hello-batch"
kind = "batch"
module = "hello.wasm"
instance = 200
retries = "many"
schedule = "* * * * *"
constraints = [["zone", "NEAR", "x"], ["arch", "LIKE", "x86("]]
[resources]
cpus = 0.1
mem = "32MB"
memory = "1GiB"
"#;
    assert_eq!(
        errors(spec, Format::Toml),
        [
            "5:1: instance: unknown field `instance`; did you mean `instances`?",
            "6:11: retries: expected an integer, found the string \"many\"",
            "7:1: schedule: `schedule` applies to cron jobs only",
            "8:25: constraints[0]: unknown operator \"NEAR\" (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER)",
            "8:56: constraints[1]: \"x86(\" is not a regular expression (unclosed group)",
            "12:1: resources.memory: unknown field `memory`",
        ]
    );
}

#[test]
fn missing_fields_versions_kinds_and_cron_are_refused() {
    let e = errors("name = \"x\"\n", Format::Toml);
    assert!(
        e.contains(&"1:1: version: required: `version = 1`".to_owned()),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("module: required field is missing")),
        "{e:?}"
    );
    let e = errors(
        &SMALLEST.replace("version = 1", "version = 2"),
        Format::Toml,
    );
    assert_eq!(
        e,
        ["1:11: version: version 2 is not supported (this corral reads version 1)"]
    );
    let e = errors(&SMALLEST.replace("\"batch\"", "\"daemon\""), Format::Toml);
    assert!(
        e[0].starts_with("3:8: kind: \"daemon\" is not a kind"),
        "{e:?}"
    );
    let cron = |schedule: &str| {
        SMALLEST
            .replace("\"batch\"", "\"cron\"")
            .replace("instances = 200", &format!("schedule = \"{schedule}\""))
    };
    for bad in [
        "*/5 * * *",
        "61 * * * *",
        "* * * * 9",
        "R/not-a-date/PT1H",
        "R/2027-01-01T00:00:00Z/PT0S",
    ] {
        let e = errors(&cron(bad), Format::Toml);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(e[0].starts_with("5:12: schedule: "), "{bad}: {e:?}");
    }
    let zone = SMALLEST.replace("\"batch\"", "\"cron\"").replace(
        "instances = 200",
        "schedule = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"",
    );
    let e = errors(&zone, Format::Toml);
    assert!(
        e.iter()
            .any(|l| l.contains("\"Mars/Olympus\" is not a known time zone")),
        "{e:?}"
    );
    let e = errors(
        &SMALLEST.replace("module = \"hello.wasm\"", "module = \"sha256:abc\""),
        Format::Toml,
    );
    assert!(e[0].starts_with("4:10: module: \"sha256:abc\""), "{e:?}");
    let e = errors(
        &SMALLEST.replace("cpus = 0.1", "cpus = \"lots\""),
        Format::Toml,
    );
    assert_eq!(
        e,
        ["7:8: resources.cpus: expected a number of CPUs, found the string \"lots\""]
    );
}

#[test]
fn a_pipeline_file_holds_several_jobs_whose_dependencies_form_no_cycle() {
    let pipeline = r#"
version = 1

[[jobs]]
name = "map"
kind = "batch"
module = "wordcount.wasm"
instances = 4
resources = { cpus = 0.5 }

[[jobs]]
name = "reduce"
kind = "batch"
module = "wordcount.wasm"
depends_on = ["map"]
inputs = [{ path = "parts", from = "map", output = "counts.txt" }]
resources = { cpus = 0.5 }
"#;
    let jobs = parse(pipeline, Format::Toml, "p").unwrap();
    assert_eq!(jobs.len(), 2);
    let cyclic = pipeline.replace("instances = 4", "instances = 4\ndepends_on = [\"reduce\"]");
    let e = errors(&cyclic, Format::Toml);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].ends_with("jobs: `depends_on` forms a cycle: map -> reduce -> map"),
        "{e:?}"
    );
    let e = errors(
        &pipeline.replace("depends_on = [\"map\"]\n", ""),
        Format::Toml,
    );
    assert!(
        e[0].contains("jobs[1].inputs: input from job \"map\", which is not in `depends_on`"),
        "{e:?}"
    );
    let twice = pipeline
        .replace("name = \"reduce\"", "name = \"map\"")
        .replace("depends_on = [\"map\"]\n", "")
        .replace(
            "inputs = [{ path = \"parts\", from = \"map\", output = \"counts.txt\" }]\n",
            "",
        );
    let e = errors(&twice, Format::Toml);
    assert!(
        e.iter().any(|l| l.contains("two jobs are named \"map\"")),
        "{e:?}"
    );
    let e = errors(
        &SMALLEST.replace("instances = 200", "depends_on = [\"hello-batch\"]"),
        Format::Toml,
    );
    assert!(e[0].contains("a job cannot depend on itself"), "{e:?}");
}

#[test]
fn yaml_and_json_errors_have_positions_too() {
    let yaml = "version: 1\nname: x\nkind: batch\nmodule: m.wasm\nresources:\n  cpus: many\n";
    assert_eq!(
        errors(yaml, Format::Yaml),
        ["6:9: resources.cpus: invalid CPU count \"many\" (expected e.g. 0.5 or 2)"]
    );
    let json = "{\"version\": 1, \"name\": \"x\", \"kind\": \"batch\",\n \"module\": \"m.wasm\",\n \"resources\": {\"cpus\": 1}, \"instancs\": 2}";
    let e = errors(json, Format::Json);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("3:28: instancs: unknown field `instancs`; did you mean `instances`?"),
        "{e:?}"
    );
}

#[test]
fn posix_weekdays_keep_their_meaning() {
    assert_eq!(posix_weekdays("1-5").unwrap(), "Mon-Fri");
    assert_eq!(posix_weekdays("0,7").unwrap(), "Sun,Sun");
    assert_eq!(posix_weekdays("*/2").unwrap(), "*/2");
    assert!(posix_weekdays("8").is_err());
    let sundays = cron_schedule(&["0", "12", "*", "*", "0"]).unwrap();
    let after: jiff::Zoned = "2027-01-04T00:00:00+00:00[UTC]".parse().unwrap();
    let next = sundays.after(after).next().unwrap();
    assert_eq!(next.weekday(), jiff::civil::Weekday::Sunday);
}
