//! Reading typed fields out of a document tree, collecting every error with its place.

use std::time::Duration;

use corral_types::quantity::{parse_bytes, parse_duration};

use super::SpecError;
use super::node::{Node, Pos, Value};

/// The errors found so far.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    pub errors: Vec<SpecError>,
    /// Put before every path: `jobs[2].` while reading the third job of a file of several.
    pub prefix: String,
}

impl Reader {
    pub(crate) fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.errors.push(SpecError {
            pos,
            path: format!("{}{path}", self.prefix)
                .trim_end_matches('.')
                .to_owned(),
            message: message.into(),
        });
    }

    fn wrong(&mut self, node: &Node, path: &str, expected: &str) {
        self.error(
            node.pos,
            path,
            format!("expected {expected}, found {}", node.describe()),
        );
    }

    /// The fields of a table at `path`, or `None` (and an error) if `node` is no table.
    pub(crate) fn table<'a>(&mut self, node: &'a Node, path: &str) -> Option<Fields<'a>> {
        match &node.value {
            Value::Map(entries) => Some(Fields {
                entries,
                taken: vec![false; entries.len()],
                path: path.to_owned(),
                pos: node.pos,
            }),
            _ => {
                self.wrong(node, path, "a table");
                None
            }
        }
    }

    pub(crate) fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) | Value::Plain(s) if !s.is_empty() => Some(s.clone()),
            _ => {
                self.wrong(node, path, "a string");
                None
            }
        }
    }

    /// A number written as one (not a string).
    fn number<'n>(&mut self, node: &'n Node, path: &str, what: &str) -> Option<&'n str> {
        match &node.value {
            Value::Plain(s) if !s.is_empty() => Some(s),
            _ => {
                self.wrong(node, path, what);
                None
            }
        }
    }

    /// An integer within `range`.
    pub(crate) fn integer(
        &mut self,
        node: &Node,
        path: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u64> {
        let text = self.number(node, path, "an integer")?;
        match text.parse::<u64>() {
            Ok(n) if range.contains(&n) => Some(n),
            Ok(n) => {
                self.error(
                    node.pos,
                    path,
                    format!("{n} is out of range ({} to {})", range.start(), range.end()),
                );
                None
            }
            Err(_) => {
                self.wrong(node, path, "an integer");
                None
            }
        }
    }

    pub(crate) fn float(&mut self, node: &Node, path: &str) -> Option<f64> {
        let text = self.number(node, path, "a number")?;
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Some(f),
            _ => {
                self.wrong(node, path, "a number");
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Plain(s) if s == "true" => Some(true),
            Value::Plain(s) if s == "false" => Some(false),
            _ => {
                self.wrong(node, path, "true or false");
                None
            }
        }
    }

    /// A duration: `"10s"`, `"500ms"`, `"2m"`, or an ISO 8601 duration (`"PT10S"`).
    pub(crate) fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let text = self.string(node, path)?;
        let parsed = if text.starts_with(['P', 'p']) {
            iso_duration(&text)
        } else {
            parse_duration(&text)
        };
        parsed.map_err(|e| self.error(node.pos, path, e)).ok()
    }

    /// A byte size: `"32MiB"`, or a number of MiB (as Marathon's `mem`).
    pub(crate) fn size(&mut self, node: &Node, path: &str) -> Option<u64> {
        match &node.value {
            // A bare integer is MiB; anything else (an unquoted YAML `32MiB`) reads as a size.
            Value::Plain(s) if s.bytes().all(|b| b.is_ascii_digit()) => match s.parse::<u64>() {
                Ok(mib) if mib <= 1 << 40 => Some(mib << 20),
                _ => {
                    self.error(node.pos, path, format!("{s} MiB is out of range"));
                    None
                }
            },
            Value::Str(s) | Value::Plain(s) => parse_bytes(s)
                .map_err(|e| self.error(node.pos, path, e))
                .ok(),
            _ => {
                self.wrong(node, path, "a size such as \"64MiB\"");
                None
            }
        }
    }

    pub(crate) fn list<'a>(&mut self, node: &'a Node, path: &str) -> Option<&'a [Node]> {
        match &node.value {
            Value::List(items) => Some(items),
            _ => {
                self.wrong(node, path, "a list");
                None
            }
        }
    }

    pub(crate) fn strings(&mut self, node: &Node, path: &str) -> Vec<String> {
        self.list(node, path)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
            .collect()
    }

    /// A table of string values (numbers and booleans read as their text).
    pub(crate) fn string_map(&mut self, node: &Node, path: &str) -> Vec<(String, String)> {
        let Value::Map(entries) = &node.value else {
            self.wrong(node, path, "a table");
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|(key, _, value)| match &value.value {
                Value::Str(s) | Value::Plain(s) => Some((key.clone(), s.clone())),
                _ => {
                    self.wrong(value, &format!("{path}.{key}"), "a string");
                    None
                }
            })
            .collect()
    }
}

/// An ISO 8601 duration (`PT10S`, `P1D`: days are 24 hours).
pub(crate) fn iso_duration(text: &str) -> Result<Duration, String> {
    let span: jiff::Span = text
        .parse()
        .map_err(|e| format!("{text:?} is not an ISO 8601 duration: {e}"))?;
    let relative = jiff::SpanRelativeTo::days_are_24_hours();
    let total = span
        .total((jiff::Unit::Millisecond, relative))
        .map_err(|e| format!("{text:?}: {e} (years and months have no fixed length)"))?;
    if !(0.0..=1e15).contains(&total) {
        return Err(format!("{text:?} is out of range"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked range"
    )]
    Ok(Duration::from_millis(total.round() as u64))
}

/// A table's fields, each taken at most once; what was never taken is reported unknown.
pub(crate) struct Fields<'a> {
    entries: &'a [(String, Pos, Node)],
    taken: Vec<bool>,
    pub path: String,
    pub pos: Pos,
}

impl<'a> Fields<'a> {
    /// The field `name`, if given.
    pub(crate) fn take(&mut self, name: &str) -> Option<&'a Node> {
        let i = self.entries.iter().position(|(key, _, _)| key == name)?;
        self.taken[i] = true;
        Some(&self.entries[i].2)
    }

    /// Where field `name` is written (or the table, if it is not).
    pub(crate) fn pos_of(&self, name: &str) -> Pos {
        self.entries
            .iter()
            .find(|(key, _, _)| key == name)
            .map_or(self.pos, |(_, pos, _)| *pos)
    }

    /// The path of field `name`.
    pub(crate) fn child(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Reports the fields nobody took, suggesting the closest of `known`.
    pub(crate) fn finish(self, r: &mut Reader, known: &[&str]) {
        for ((key, pos, _), taken) in self.entries.iter().zip(&self.taken) {
            if *taken {
                continue;
            }
            let hint = known
                .iter()
                .map(|k| (edit_distance(k, key), k))
                .filter(|(d, _)| *d <= 2)
                .min()
                .map(|(_, k)| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            r.error(*pos, &path, format!("unknown field `{key}`{hint}"));
        }
    }
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_and_distances() {
        assert_eq!(iso_duration("PT10S"), Ok(Duration::from_secs(10)));
        assert_eq!(iso_duration("P1DT1H"), Ok(Duration::from_secs(90_000)));
        assert!(iso_duration("P1M").is_err());
        assert!(iso_duration("PX").is_err());
        assert_eq!(edit_distance("instance", "instances"), 1);
        assert_eq!(edit_distance("kind", "kind"), 0);
    }
}
