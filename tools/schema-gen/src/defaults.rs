//! Every `default` in the schema must be what the parser really does when the field is left out.
//!
//! For each property with a default, a seed configuration (`seed.json`: one valid document with
//! at least one element in every array) is parsed twice: without the property, and with the
//! property set to the schema's default. Both results (the parsed `Config`, or the error) must
//! be identical, compared through their `Debug` text. A field the seed cannot reach is reported,
//! so a new nested list makes itself known instead of going unchecked.

use serde_json::{Map, Value};

use identity_filter::Config;

/// One step from a schema/document node to a child.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    /// The first element of an array.
    First,
}

/// Check every default of `schema` against the parser, starting from `seed`.
pub fn verify_defaults(schema: &Value, seed: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = Config::from_json(seed.to_string().as_bytes()) {
        problems.push(format!("seed.json is not a valid configuration: {e}"));
        return problems;
    }
    let mut walker = Walker {
        root: schema,
        seed,
        following: Vec::new(),
        problems: &mut problems,
    };
    walker.walk(schema, &mut Vec::new());
    problems
}

struct Walker<'a> {
    root: &'a Value,
    seed: &'a Value,
    /// `$ref`s being followed on the current path: a recursive type is checked once.
    following: Vec<String>,
    problems: &'a mut Vec<String>,
}

impl Walker<'_> {
    fn walk(&mut self, schema: &Value, at: &mut Vec<Step>) {
        let Some(obj) = schema.as_object() else {
            return;
        };
        if let Some(Value::String(r)) = obj.get("$ref") {
            let target = r
                .strip_prefix("#/definitions/")
                .and_then(|name| self.root.get("definitions")?.get(name));
            match target {
                Some(def) if !self.following.contains(r) => {
                    self.following.push(r.clone());
                    self.walk(def, at);
                    self.following.pop();
                }
                Some(_) => {}
                None => self
                    .problems
                    .push(format!("{}: unresolved $ref {r}", show(at))),
            }
        }
        if let Some(Value::Object(props)) = obj.get("properties") {
            for (name, sub) in props {
                at.push(Step::Key(name.clone()));
                if let Some(default) = sub.get("default") {
                    // Under a `$ref` (a recursive type: schemars inlines its first occurrence,
                    // where it is checked), only what the seed reaches is checked.
                    let report_unreachable = self.following.is_empty();
                    check_one(self.seed, at, default, report_unreachable, self.problems);
                }
                self.walk(sub, at);
                at.pop();
            }
        }
        if let Some(items) = obj.get("items").filter(|i| i.is_object()) {
            at.push(Step::First);
            self.walk(items, at);
            at.pop();
        }
        // `Option<Struct>` is `anyOf: [{struct}, {type: null}]`: look into the struct.
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(subs)) = obj.get(key) {
                for sub in subs {
                    self.walk(sub, at);
                }
            }
        }
    }
}

fn check_one(
    seed: &Value,
    at: &[Step],
    default: &Value,
    report_unreachable: bool,
    problems: &mut Vec<String>,
) {
    let Some((Step::Key(name), parent_path)) = at.split_last() else {
        return;
    };
    let mut without = seed.clone();
    let Some(parent) = reach(&mut without, parent_path) else {
        if !report_unreachable {
            return;
        }
        problems.push(format!(
            "{}: seed.json has no {} to check this default in; add one",
            show(at),
            show(parent_path)
        ));
        return;
    };
    parent.remove(name);
    let mut with = without.clone();
    if let Some(parent) = reach(&mut with, parent_path) {
        parent.insert(name.clone(), default.clone());
    }
    let a = parse(&without);
    let b = parse(&with);
    if a != b {
        problems.push(format!(
            "{}: the schema's default {default} is not what the parser uses when the field is \
             left out",
            show(at)
        ));
    }
}

fn parse(doc: &Value) -> String {
    format!("{:?}", Config::from_json(doc.to_string().as_bytes()))
}

/// The object at `path` inside `doc`, creating absent objects on the way (an absent section is
/// its default, `{}`, which is itself checked). `None` when an array is absent or empty.
fn reach<'a>(doc: &'a mut Value, path: &[Step]) -> Option<&'a mut Map<String, Value>> {
    let mut node = doc;
    for step in path {
        node = match step {
            Step::Key(k) => {
                let obj = node.as_object_mut()?;
                let child = obj
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if child.is_null() {
                    *child = Value::Object(Map::new());
                }
                child
            }
            Step::First => node.as_array_mut()?.first_mut()?,
        };
    }
    node.as_object_mut()
}

fn show(at: &[Step]) -> String {
    let mut s = String::new();
    for step in at {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::First => s.push_str("[0]"),
        }
    }
    if s.is_empty() {
        "(root)".into()
    } else {
        s
    }
}
