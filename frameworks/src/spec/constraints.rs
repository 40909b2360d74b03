//! Reading placement constraints: Marathon's `[field, operator, value]`.

// The readers share the parent module's helpers and types.
use super::*;

pub(super) fn constraints(r: &mut Reader, node: &Node) -> Vec<Constraint> {
    let items = r.list(node, "constraints").unwrap_or_default();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("constraints[{i}]");
        let Some(parts) = r.list(item, &path) else {
            continue;
        };
        let words: Vec<(String, Pos)> = parts
            .iter()
            .filter_map(|p| r.string(p, &path).map(|s| (s, p.pos)))
            .collect();
        if words.len() != parts.len() {
            continue;
        }
        let operator = match words.as_slice() {
            [_, (op, pos)] => match op.as_str() {
                "UNIQUE" => Some(Operator::Unique),
                "GROUP_BY" => Some(Operator::GroupBy(None)),
                "CLUSTER" | "LIKE" | "UNLIKE" | "MAX_PER" => {
                    r.error(
                        *pos,
                        &path,
                        format!("{op} needs a value: [field, \"{op}\", value]"),
                    );
                    None
                }
                other => {
                    unknown_operator(r, *pos, &path, other);
                    None
                }
            },
            [_, (op, pos), (value, value_pos)] => match op.as_str() {
                "CLUSTER" => Some(Operator::Cluster(value.clone())),
                "LIKE" | "UNLIKE" => match regex::Regex::new(&format!("^(?:{value})$")) {
                    Ok(re) if op == "LIKE" => Some(Operator::Like(re)),
                    Ok(re) => Some(Operator::Unlike(re)),
                    Err(e) => {
                        // The error's last line says what is wrong; the others draw it.
                        let text = e.to_string();
                        let why = text.lines().last().unwrap_or_default();
                        let why = why.trim_start_matches("error: ");
                        r.error(
                            *value_pos,
                            &path,
                            format!("{value:?} is not a regular expression ({why})"),
                        );
                        None
                    }
                },
                "GROUP_BY" | "MAX_PER" => match value.parse::<u64>() {
                    Ok(n) if n >= 1 && op == "MAX_PER" => Some(Operator::MaxPer(n)),
                    Ok(n) if n >= 1 => Some(Operator::GroupBy(Some(n))),
                    _ => {
                        r.error(
                            *value_pos,
                            &path,
                            format!("{op} takes a count of at least 1, not {value:?}"),
                        );
                        None
                    }
                },
                "UNIQUE" => {
                    r.error(*value_pos, &path, "UNIQUE takes no value");
                    None
                }
                other => {
                    unknown_operator(r, *pos, &path, other);
                    None
                }
            },
            _ => {
                r.error(
                    item.pos,
                    &path,
                    "a constraint is [field, OPERATOR] or [field, OPERATOR, value]",
                );
                None
            }
        };
        if let (Some(operator), Some((field, _))) = (operator, words.first()) {
            out.push(Constraint {
                field: field.clone(),
                operator,
            });
        }
    }
    out
}

pub(super) fn unknown_operator(r: &mut Reader, pos: Pos, path: &str, op: &str) {
    r.error(
        pos,
        path,
        format!("unknown operator {op:?} (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER)"),
    );
}
