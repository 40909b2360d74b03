//! The protos state every limit's value next to its name (`MAX_PREOPENS (64)`); this keeps
//! those values true to `corral_proto::limits`.

use corral_proto::limits;

const PROTOS: [&str; 5] = [
    include_str!("../../proto/corral/v1/common.proto"),
    include_str!("../../proto/corral/v1/scheduler.proto"),
    include_str!("../../proto/corral/v1/agent.proto"),
    include_str!("../../proto/corral/v1/operator.proto"),
    include_str!("../../proto/corral/v1/peer.proto"),
];

/// A size as the protos write it: `64 MiB`, `256 KiB`, `512`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 && b >= 64 << 10 => format!("{} KiB", b >> 10),
        b => b.to_string(),
    }
}

#[test]
fn every_limit_named_in_the_protos_states_its_value() {
    let limits = [
        (
            "MODULE_CHUNK_BYTES",
            size(limits::MODULE_CHUNK_BYTES as u64),
        ),
        ("MAX_ARTIFACT_BYTES", size(limits::MAX_ARTIFACT_BYTES)),
        ("MAX_RESULT_BYTES", size(limits::MAX_RESULT_BYTES as u64)),
        (
            "MAX_CHECKPOINT_BYTES",
            size(limits::MAX_CHECKPOINT_BYTES as u64),
        ),
        ("MAX_TASK_OUTPUTS", limits::MAX_TASK_OUTPUTS.to_string()),
        ("MAX_PREOPENS", limits::MAX_PREOPENS.to_string()),
        ("MAX_STDIN_BYTES", size(limits::MAX_STDIN_BYTES as u64)),
        ("MAX_READ_FILE_BYTES", size(limits::MAX_READ_FILE_BYTES)),
        (
            "MAX_STORE_KEY_BYTES",
            size(limits::MAX_STORE_KEY_BYTES as u64),
        ),
        (
            "MAX_STORE_VALUE_BYTES",
            size(limits::MAX_STORE_VALUE_BYTES as u64),
        ),
        ("MAX_STORE_KEYS", limits::MAX_STORE_KEYS.to_string()),
        ("MAX_STORE_BYTES", size(limits::MAX_STORE_BYTES as u64)),
    ];
    let mut seen = 0;
    for proto in PROTOS {
        // Comments read as running text: a value may wrap onto the next comment line.
        let proto = proto
            .lines()
            .map(|l| l.trim().trim_start_matches("//").trim())
            .collect::<Vec<_>>()
            .join(" ");
        let proto = proto.as_str();
        for (name, value) in &limits {
            for (at, _) in proto.match_indices(name) {
                let before = proto[..at].chars().next_back();
                let after = &proto[at + name.len()..];
                if before.is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                    || after.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                {
                    continue; // part of a longer name
                }
                assert!(
                    after.starts_with(&format!(" ({value})")),
                    "{name} is documented as {:?}, not ({value})",
                    &after[..after.len().min(16)]
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= limits.len(), "only {seen} mentions");
}
