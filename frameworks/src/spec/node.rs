//! A job spec document as one tree whatever its format, every node with its line and column,
//! so that every error — a syntax error, a wrong type, an unknown field, an invalid value —
//! names the place it is about.
//!
//! TOML comes from `toml_edit` (byte spans), YAML from `marked-yaml` (marks). JSON is checked
//! by `serde_json` (its syntax errors are the precise ones) and then read as YAML, of which it
//! is a subset, for the positions.

use std::fmt;

use marked_yaml::{LoaderOptions, Node as YamlNode};

use super::{Format, SpecError};

/// A 1-based line and column; `0:0` when unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value of the document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A quoted string (or any TOML string).
    Str(String),
    /// Anything else written as a scalar: a number, a boolean, an unquoted YAML word. Read
    /// as the type the field wants.
    Plain(String),
    /// A table or mapping, in the document's order.
    Map(Vec<(String, Pos, Node)>),
    List(Vec<Node>),
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl Node {
    /// What kind of value this is, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            Value::Str(s) => format!("the string {s:?}"),
            Value::Plain(s) if s.is_empty() => "nothing".into(),
            Value::Plain(s) => format!("`{s}`"),
            Value::Map(_) => "a table".into(),
            Value::List(_) => "a list".into(),
        }
    }
}

/// Parses `source` as `format` into a tree whose top is a table.
pub(crate) fn load(source: &str, format: Format) -> Result<Node, SpecError> {
    let root = match format {
        Format::Toml => from_toml(source)?,
        Format::Yaml => from_yaml(source)?,
        Format::Json => {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(source) {
                return Err(syntax(
                    Pos {
                        line: e.line(),
                        column: e.column(),
                    },
                    e.to_string(),
                ));
            }
            from_yaml(source)?
        }
    };
    match root.value {
        Value::Map(_) => Ok(root),
        _ => Err(syntax(root.pos, "a job spec is a table of fields".into())),
    }
}

fn syntax(pos: Pos, message: String) -> SpecError {
    SpecError {
        pos,
        path: String::new(),
        message,
    }
}

fn from_toml(source: &str) -> Result<Node, SpecError> {
    let doc = toml_edit::Document::parse(source).map_err(|e| {
        let pos = e
            .span()
            .map_or_else(Pos::default, |s| pos_at(source, s.start));
        syntax(pos, e.message().trim().to_owned())
    })?;
    Ok(toml_table(
        source,
        doc.as_table(),
        Pos { line: 1, column: 1 },
    ))
}

fn toml_table(source: &str, table: &toml_edit::Table, pos: Pos) -> Node {
    let entries = table
        .iter()
        .map(|(key, item)| {
            let key_pos = table
                .key(key)
                .and_then(toml_edit::Key::span)
                .map_or(pos, |s| pos_at(source, s.start));
            (key.to_owned(), key_pos, toml_item(source, item, key_pos))
        })
        .collect();
    Node {
        pos,
        value: Value::Map(entries),
    }
}

fn toml_item(source: &str, item: &toml_edit::Item, fallback: Pos) -> Node {
    let pos = item.span().map_or(fallback, |s| pos_at(source, s.start));
    match item {
        toml_edit::Item::Value(value) => toml_value(source, value, pos),
        toml_edit::Item::Table(table) => toml_table(source, table, pos),
        toml_edit::Item::ArrayOfTables(tables) => Node {
            pos,
            value: Value::List(
                tables
                    .iter()
                    .map(|t| {
                        let p = t.span().map_or(pos, |s| pos_at(source, s.start));
                        toml_table(source, t, p)
                    })
                    .collect(),
            ),
        },
        toml_edit::Item::None => Node {
            pos,
            value: Value::Plain(String::new()),
        },
    }
}

fn toml_value(source: &str, value: &toml_edit::Value, fallback: Pos) -> Node {
    use toml_edit::Value as V;
    let pos = value.span().map_or(fallback, |s| pos_at(source, s.start));
    let value = match value {
        V::String(s) => Value::Str(s.value().clone()),
        V::Integer(i) => Value::Plain(i.value().to_string()),
        V::Float(f) => Value::Plain(f.value().to_string()),
        V::Boolean(b) => Value::Plain(b.value().to_string()),
        V::Datetime(d) => Value::Str(d.value().to_string()),
        V::Array(items) => Value::List(items.iter().map(|v| toml_value(source, v, pos)).collect()),
        V::InlineTable(t) => Value::Map(
            t.iter()
                .map(|(key, v)| {
                    let key_pos = t
                        .key(key)
                        .and_then(toml_edit::Key::span)
                        .map_or(pos, |s| pos_at(source, s.start));
                    (key.to_owned(), key_pos, toml_value(source, v, key_pos))
                })
                .collect(),
        ),
    };
    Node { pos, value }
}

/// The line and column of byte `offset` of `source`.
fn pos_at(source: &str, offset: usize) -> Pos {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

fn from_yaml(source: &str) -> Result<Node, SpecError> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = marked_yaml::parse_yaml_with_options(0, source, options).map_err(|e| {
        use marked_yaml::LoadError as E;
        let (marker, message) = match &e {
            E::TopLevelMustBeMapping(m) => (Some(*m), "a job spec is a table of fields".into()),
            E::DuplicateKey(inner) => (
                inner.key.span().start().copied(),
                format!("field `{}` is given twice", inner.key.as_str()),
            ),
            E::ScanError(m, scan) => (Some(*m), scan.info().to_owned()),
            E::TopLevelMustBeSequence(m)
            | E::UnexpectedAnchor(m)
            | E::MappingKeyMustBeScalar(m)
            | E::UnexpectedTag(m) => (Some(*m), e.to_string()),
        };
        let pos = marker.map_or_else(Pos::default, |m| Pos {
            line: m.line(),
            column: m.column(),
        });
        syntax(pos, message)
    })?;
    Ok(yaml_node(&root))
}

fn yaml_node(node: &YamlNode) -> Node {
    let pos = yaml_pos(node.span());
    let value = match node {
        YamlNode::Scalar(s) if s.may_coerce() => Value::Plain(s.as_str().to_owned()),
        YamlNode::Scalar(s) => Value::Str(s.as_str().to_owned()),
        YamlNode::Sequence(items) => Value::List(items.iter().map(yaml_node).collect()),
        YamlNode::Mapping(map) => Value::Map(
            map.iter()
                .map(|(key, value)| {
                    (
                        key.as_str().to_owned(),
                        yaml_pos(key.span()),
                        yaml_node(value),
                    )
                })
                .collect(),
        ),
    };
    Node { pos, value }
}

fn yaml_pos(span: &marked_yaml::Span) -> Pos {
    span.start().map_or_else(Pos::default, |m| Pos {
        line: m.line(),
        column: m.column(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[(String, Pos, Node)] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn deeply_nested_specs_are_refused_without_exhausting_the_stack() {
        // Within the spec size limit, a list nested this deep would overflow a recursive
        // parser's or converter's stack: that must be an error, not an abort.
        let depth = 100_000;
        let (open, close) = ("[".repeat(depth), "]".repeat(depth));
        for (text, format) in [
            (format!("a = {open}{close}\n"), Format::Toml),
            (format!("a: {open}{close}\n"), Format::Yaml),
            (format!("{{\"a\": {open}{close}}}"), Format::Json),
        ] {
            let err = load(&text, format).expect_err("too deep");
            let said = err.message.to_lowercase();
            assert!(
                ["deep", "recurs", "nest"].iter().any(|w| said.contains(w)),
                "{format:?}: {}",
                err.message
            );
        }
    }

    #[test]
    fn yaml_anchors_are_refused_so_a_small_spec_cannot_expand_exponentially() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            text += &format!("a{i}: &a{i} [{}]\n", vec![prev; 9].join(", "));
        }
        let err = load(&text, Format::Yaml).expect_err("anchors");
        assert!(err.message.contains("anchor"), "{}", err.message);
    }

    #[test]
    fn every_format_gives_the_same_tree_with_positions() {
        let toml = "name = \"a\"\n[resources]\ncpus = 0.5\n";
        let yaml = "name: a\nresources:\n  cpus: 0.5\n";
        let json = "{\n  \"name\": \"a\",\n  \"resources\": {\"cpus\": 0.5}\n}\n";
        for (text, format) in [
            (toml, Format::Toml),
            (yaml, Format::Yaml),
            (json, Format::Json),
        ] {
            let root = load(text, format).unwrap();
            let top = map(&root);
            assert_eq!(top[0].0, "name", "{format:?}");
            assert_eq!(top[0].1.line, if format == Format::Json { 2 } else { 1 });
            let (_, _, resources) = &top[1];
            let (key, pos, cpus) = &map(resources)[0];
            assert_eq!(key, "cpus");
            assert_eq!(cpus.value, Value::Plain("0.5".into()), "{format:?}");
            assert_eq!(pos.line, 3, "{format:?}");
        }
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = load("name = \"a\"\ninstances = = 3\n", Format::Toml).unwrap_err();
        assert_eq!(e.pos.line, 2, "{e}");
        let e = load("name: a\n  bad: [\n", Format::Yaml).unwrap_err();
        assert!(e.pos.line >= 2, "{e}");
        let e = load("{\"name\": \"a\",\n \"x\": }", Format::Json).unwrap_err();
        assert_eq!(e.pos.line, 2, "{e}");
        let e = load("name: a\nname: b\n", Format::Yaml).unwrap_err();
        assert!(e.message.contains("given twice"), "{e}");
        assert_eq!(e.pos.line, 2);
        let e = load("- 1\n- 2\n", Format::Yaml).unwrap_err();
        assert!(e.message.contains("table"), "{e}");
    }
}
