//! A JSON Schema, compiled into per-node rules and checked against a typed message while
//! it is walked through `serde`, without building a `serde_json::Value`.
//!
//! Why: building a `Value` per message only to validate it, and serialising that `Value`,
//! was most of the per-message cost. A plan is compiled from the very schema files that
//! are published; it refuses every keyword it does not implement (that message type then
//! falls back to the full validator), and property tests hold its verdict equal to the
//! `jsonschema` crate's for every message type.

use regex::Regex;
use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value;

/// The rules of one or more schemas that apply to the same instance (their `allOf`).
pub(super) struct Plan {
    nodes: Vec<Node>,
}

/// The rules at one place of the instance, and where its children's rules are.
#[derive(Default)]
struct Node {
    /// JSON pointer of this place, `*` for any array item (for error messages).
    path: String,
    rules: Vec<Rule>,
    /// Every property name any rule here mentions, with the node of its value when a
    /// schema describes it; an object's keys become a bit mask over this list's indexes.
    names: Vec<(String, Option<usize>)>,
    items: Option<usize>,
}

enum Rule {
    Type(Vec<Kind>),
    Const(Value),
    Enum(Vec<Value>),
    Minimum(f64),
    Maximum(f64),
    ExclusiveMinimum(f64),
    ExclusiveMaximum(f64),
    MinLength(usize),
    MaxLength(usize),
    Pattern(Matcher),
    Format(Format),
    /// Bit mask over `Node::names`.
    Required(u64),
    /// `additionalProperties: false`: the mask of the names that schema object allows.
    Closed(u64),
    /// `anyOf` of `required` lists.
    AnyOfRequired(Vec<u64>),
    MinProperties(usize),
    MaxProperties(usize),
    MinItems(usize),
    MaxItems(usize),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

enum Format {
    DateTime,
    Date,
}

/// A `pattern`. Two shapes the schemas use on every message are matched directly — a
/// literal suffix (`Z$`) and one character class repeated (`^[0-9a-f]{32}$`) — and any
/// other pattern by the regex engine.
struct Matcher {
    pattern: String,
    shape: Shape,
}

enum Shape {
    Suffix(String),
    /// Allowed ASCII characters, and the length bounds.
    Class {
        allowed: [bool; 128],
        min: usize,
        max: usize,
    },
    Regex(Regex),
}

impl Matcher {
    fn new(pattern: &str) -> Result<Self, String> {
        let shape = match (Self::suffix(pattern), Self::class(pattern)) {
            (Some(suffix), _) => Shape::Suffix(suffix.to_owned()),
            (None, Some((allowed, min, max))) => Shape::Class { allowed, min, max },
            (None, None) if Self::same_in_both_dialects(pattern) => {
                Shape::Regex(Regex::new(pattern).map_err(|e| format!("pattern {pattern:?}: {e}"))?)
            }
            (None, None) => {
                return Err(format!("pattern {pattern:?} may read differently as ECMA-262 and as Rust regex"));
            }
        };
        Ok(Self { pattern: pattern.to_owned(), shape })
    }

    /// Whether the Rust regex engine reads `pattern` as JSON Schema's ECMA-262 does: no
    /// escape but `\.` (`\d`, `\w`, `\s` are Unicode-aware in Rust, ASCII in ECMA) and
    /// no class-set operators (`&&`, `--`, `~~` are literal in ECMA).
    fn same_in_both_dialects(pattern: &str) -> bool {
        let without_dots = pattern.replace("\\.", "");
        !without_dots.contains('\\') && !["&&", "--", "~~"].iter().any(|op| pattern.contains(op))
    }

    /// `abc$`: letters, digits and spaces, then the end.
    fn suffix(pattern: &str) -> Option<&str> {
        let literal = pattern.strip_suffix('$')?;
        literal.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ').then_some(literal)
    }

    /// `^[a-z0-9_-]{n}$`, `{m,n}`, `+` or `*`: plain characters and ranges in the class.
    fn class(pattern: &str) -> Option<([bool; 128], usize, usize)> {
        let rest = pattern.strip_prefix("^[")?.strip_suffix('$')?;
        let (class, count) = rest.split_once(']')?;
        let (min, max) = match count {
            "+" => (1, usize::MAX),
            "*" => (0, usize::MAX),
            _ => {
                let bounds = count.strip_prefix('{')?.strip_suffix('}')?;
                match bounds.split_once(',') {
                    Some((m, n)) => (m.parse().ok()?, n.parse().ok()?),
                    None => (bounds.parse().ok()?, bounds.parse().ok()?),
                }
            }
        };
        let chars: Vec<char> = class.chars().collect();
        if chars.is_empty() || chars[0] == '^' || chars.iter().any(|c| !c.is_ascii() || matches!(c, '\\' | '[' | ']')) {
            return None;
        }
        let mut allowed = [false; 128];
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                let (from, to) = (chars[i] as usize, chars[i + 2] as usize);
                if from > to {
                    return None;
                }
                allowed[from..=to].iter_mut().for_each(|a| *a = true);
                i += 3;
            } else {
                allowed[chars[i] as usize] = true;
                i += 1;
            }
        }
        Some((allowed, min, max))
    }

    fn is_match(&self, s: &str) -> bool {
        match &self.shape {
            Shape::Suffix(suffix) => s.ends_with(suffix.as_str()),
            Shape::Class { allowed, min, max } => {
                (*min..=*max).contains(&s.len())
                    && s.bytes().all(|b| allowed.get(usize::from(b)).copied().unwrap_or(false))
            }
            Shape::Regex(re) => re.is_match(s),
        }
    }
}

/// Most properties one object may name; masks are `u64`.
const MAX_NAMES: usize = 64;
/// `$ref` chains deeper than this are refused (a cycle).
const MAX_DEPTH: u32 = 32;

impl Plan {
    /// Compiles `schemas`, all applying to the same instance. Fails, naming the keyword,
    /// when a schema uses something this checker does not implement.
    pub(super) fn compile(schemas: &[&Value]) -> Result<Self, String> {
        let mut plan = Self { nodes: vec![Node { path: String::new(), ..Node::default() }] };
        for schema in schemas {
            plan.add(0, schema, schema, 0)?;
        }
        Ok(plan)
    }

    fn child(&mut self, parent: usize, name: &str) -> Result<usize, String> {
        let bit = self.name_bit(parent, name)?;
        let index = bit.trailing_zeros() as usize;
        if let Some(id) = self.nodes[parent].names[index].1 {
            return Ok(id);
        }
        let id = self.nodes.len();
        let path = format!("{}/{name}", self.nodes[parent].path);
        self.nodes.push(Node { path, ..Node::default() });
        self.nodes[parent].names[index].1 = Some(id);
        Ok(id)
    }

    fn name_bit(&mut self, at: usize, name: &str) -> Result<u64, String> {
        let names = &mut self.nodes[at].names;
        let index = match names.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                names.push((name.to_owned(), None));
                names.len() - 1
            }
        };
        if index >= MAX_NAMES {
            return Err(format!("{}: more than {MAX_NAMES} property names", self.nodes[at].path));
        }
        Ok(1 << index)
    }

    fn mask(&mut self, at: usize, names: &Value) -> Result<u64, String> {
        let Value::Array(names) = names else { return Err("a property list is not an array".into()) };
        let mut mask = 0;
        for name in names {
            let name = name.as_str().ok_or("a property name is not a string")?;
            mask |= self.name_bit(at, name)?;
        }
        Ok(mask)
    }

    fn add(&mut self, at: usize, schema: &Value, root: &Value, depth: u32) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("$ref nests too deep".into());
        }
        let map = match schema {
            Value::Object(map) => map,
            Value::Bool(true) => return Ok(()),
            _ => return Err(format!("{}: a schema that is not an object", self.nodes[at].path)),
        };
        // Instances are compared as f64; a bound beyond 2^53 could then miss by one.
        let number = |v: &Value| match v.as_f64() {
            Some(x) if x.abs() < EXACT => Ok(x),
            _ => Err(format!("{v} is not a number below 2^53")),
        };
        let count =
            |v: &Value| v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| format!("{v} is not a count"));
        for (key, v) in map {
            let rule = match key.as_str() {
                "$schema" | "$id" | "$comment" | "$defs" | "title" | "description" | "examples" | "default" => {
                    continue;
                }
                "$ref" => {
                    let target = v
                        .as_str()
                        .and_then(|r| r.strip_prefix('#'))
                        .and_then(|pointer| root.pointer(pointer))
                        .ok_or_else(|| format!("$ref {v} is not a local reference"))?;
                    self.add(at, target, root, depth + 1)?;
                    continue;
                }
                "type" => Rule::Type(match v {
                    Value::Array(kinds) => kinds.iter().map(kind).collect::<Result<_, _>>()?,
                    one => vec![kind(one)?],
                }),
                "const" => Rule::Const(scalar(v)?.clone()),
                "enum" => Rule::Enum(
                    v.as_array()
                        .ok_or("enum is not an array")?
                        .iter()
                        .map(|e| scalar(e).cloned())
                        .collect::<Result<_, _>>()?,
                ),
                "minimum" => Rule::Minimum(number(v)?),
                "maximum" => Rule::Maximum(number(v)?),
                "exclusiveMinimum" => Rule::ExclusiveMinimum(number(v)?),
                "exclusiveMaximum" => Rule::ExclusiveMaximum(number(v)?),
                "minLength" => Rule::MinLength(count(v)?),
                "maxLength" => Rule::MaxLength(count(v)?),
                "minItems" => Rule::MinItems(count(v)?),
                "maxItems" => Rule::MaxItems(count(v)?),
                "minProperties" => Rule::MinProperties(count(v)?),
                "maxProperties" => Rule::MaxProperties(count(v)?),
                "pattern" => {
                    let pattern = v.as_str().ok_or("pattern is not a string")?;
                    Rule::Pattern(Matcher::new(pattern)?)
                }
                "format" => match v.as_str() {
                    Some("date-time") => Rule::Format(Format::DateTime),
                    Some("date") => Rule::Format(Format::Date),
                    _ => return Err(format!("format {v} is not implemented")),
                },
                "required" => Rule::Required(self.mask(at, v)?),
                "properties" => {
                    let properties = v.as_object().ok_or("properties is not an object")?;
                    for (name, sub) in properties {
                        let child = self.child(at, name)?;
                        self.add(child, sub, root, depth)?;
                    }
                    continue;
                }
                "additionalProperties" => match v {
                    Value::Bool(true) => continue,
                    Value::Bool(false) => {
                        let mut allowed = 0;
                        for name in map.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.keys())
                        {
                            allowed |= self.name_bit(at, name)?;
                        }
                        Rule::Closed(allowed)
                    }
                    _ => return Err("additionalProperties other than true or false is not implemented".into()),
                },
                "items" => {
                    let items = match self.nodes[at].items {
                        Some(id) => id,
                        None => {
                            let id = self.nodes.len();
                            let path = format!("{}/*", self.nodes[at].path);
                            self.nodes.push(Node { path, ..Node::default() });
                            self.nodes[at].items = Some(id);
                            id
                        }
                    };
                    self.add(items, v, root, depth)?;
                    continue;
                }
                "anyOf" => {
                    let branches = v.as_array().ok_or("anyOf is not an array")?;
                    let mut masks = Vec::with_capacity(branches.len());
                    for branch in branches {
                        match branch.as_object() {
                            Some(b) if b.len() == 1 && b.contains_key("required") => {
                                masks.push(self.mask(at, &b["required"])?);
                            }
                            _ => return Err("anyOf other than a list of required lists is not implemented".into()),
                        }
                    }
                    Rule::AnyOfRequired(masks)
                }
                other => return Err(format!("{}: keyword {other} is not implemented", self.nodes[at].path)),
            };
            self.nodes[at].rules.push(rule);
        }
        Ok(())
    }

    /// Walks `message` through its `Serialize` implementation and checks every rule.
    /// `Err` lists what failed; [`Unsupported`] when the walk met a shape the checker does
    /// not model (the caller then uses the full validator).
    pub(super) fn check<T: Serialize + ?Sized>(&self, message: &T) -> Result<Vec<String>, Unsupported> {
        let mut failures = Vec::new();
        message.serialize(Walk { plan: self, node: Some(0), failures: &mut failures })?;
        Ok(failures)
    }
}

fn kind(v: &Value) -> Result<Kind, String> {
    Ok(match v.as_str() {
        Some("null") => Kind::Null,
        Some("boolean") => Kind::Boolean,
        Some("integer") => Kind::Integer,
        Some("number") => Kind::Number,
        Some("string") => Kind::String,
        Some("array") => Kind::Array,
        Some("object") => Kind::Object,
        _ => return Err(format!("type {v} is not a JSON type")),
    })
}

fn scalar(v: &Value) -> Result<&Value, String> {
    match v {
        Value::Array(_) | Value::Object(_) => Err("const or enum of an array or object is not implemented".into()),
        Value::Number(n) if n.as_f64().is_none_or(|x| x.abs() >= EXACT) => {
            Err(format!("const or enum {n} is beyond 2^53"))
        }
        v => Ok(v),
    }
}

/// Integers up to this are exact as f64.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// A value the checker has no model for; the full validator decides instead.
#[derive(Debug)]
pub(super) struct Unsupported(String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// A scalar as `serde_json` would write it.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(&'a str),
}

impl Scalar<'_> {
    fn kind_matches(&self, kind: Kind) -> bool {
        match (self, kind) {
            (Scalar::Null, Kind::Null) | (Scalar::Bool(_), Kind::Boolean) | (Scalar::Str(_), Kind::String) => true,
            (Scalar::Unsigned(_) | Scalar::Signed(_) | Scalar::Float(_), Kind::Number) => true,
            (Scalar::Unsigned(_) | Scalar::Signed(_), Kind::Integer) => true,
            (Scalar::Float(f), Kind::Integer) => f.fract() == 0.0,
            _ => false,
        }
    }

    fn number(&self) -> Option<f64> {
        match *self {
            Scalar::Unsigned(n) => Some(n as f64),
            Scalar::Signed(n) => Some(n as f64),
            Scalar::Float(f) => Some(f),
            _ => None,
        }
    }

    fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (Scalar::Null, Value::Null) => true,
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            (Scalar::Str(a), Value::String(b)) => a == b,
            (Scalar::Unsigned(a), Value::Number(b)) if b.is_u64() => Some(*a) == b.as_u64(),
            (Scalar::Signed(a), Value::Number(b)) if b.is_i64() => Some(*a) == b.as_i64(),
            (s, Value::Number(b)) => s.number().zip(b.as_f64()).is_some_and(|(a, b)| a == b),
            _ => false,
        }
    }
}

struct Walk<'p, 'f> {
    plan: &'p Plan,
    /// `None`: no rule applies here or below.
    node: Option<usize>,
    failures: &'f mut Vec<String>,
}

impl<'p, 'f> Walk<'p, 'f> {
    fn fail(&mut self, what: impl std::fmt::Display) {
        let path = self.node.map_or("", |n| self.plan.nodes[n].path.as_str());
        self.failures.push(format!("{path}: {what}"));
    }

    fn scalar(mut self, value: Scalar<'_>) -> Result<(), Unsupported> {
        let Some(node) = self.node.map(|n| &self.plan.nodes[n]) else { return Ok(()) };
        let mut failed = Vec::new();
        for rule in &node.rules {
            let ok = match rule {
                Rule::Type(kinds) => kinds.iter().any(|k| value.kind_matches(*k)),
                Rule::Const(c) => value.equals(c),
                Rule::Enum(options) => options.iter().any(|c| value.equals(c)),
                Rule::Minimum(m) => value.number().is_none_or(|n| n >= *m),
                Rule::Maximum(m) => value.number().is_none_or(|n| n <= *m),
                Rule::ExclusiveMinimum(m) => value.number().is_none_or(|n| n > *m),
                Rule::ExclusiveMaximum(m) => value.number().is_none_or(|n| n < *m),
                Rule::MinLength(m) => !matches!(value, Scalar::Str(s) if s.chars().count() < *m),
                Rule::MaxLength(m) => !matches!(value, Scalar::Str(s) if s.chars().count() > *m),
                Rule::Pattern(m) => !matches!(value, Scalar::Str(s) if !m.is_match(s)),
                Rule::Format(Format::DateTime) => !matches!(value, Scalar::Str(s) if !is_date_time(s)),
                Rule::Format(Format::Date) => !matches!(value, Scalar::Str(s) if !is_date(s)),
                // Object and array rules hold for any scalar.
                _ => true,
            };
            if !ok {
                failed.push(describe(rule));
            }
        }
        for f in failed {
            self.fail(f);
        }
        Ok(())
    }

    /// Type, const and enum rules seen by an object or an array.
    fn container(&mut self, kind: Kind) {
        let Some(node) = self.node.map(|n| &self.plan.nodes[n]) else { return };
        let mut failed = Vec::new();
        for rule in &node.rules {
            if match rule {
                Rule::Type(kinds) => !kinds.contains(&kind),
                Rule::Const(_) | Rule::Enum(_) => true,
                _ => false,
            } {
                failed.push(describe(rule));
            }
        }
        for f in failed {
            self.fail(f);
        }
    }

    fn object(mut self) -> Object<'p, 'f> {
        self.container(Kind::Object);
        Object { walk: self, seen: 0, count: 0, unknown: None, pending: None }
    }

    fn array(mut self) -> Array<'p, 'f> {
        self.container(Kind::Array);
        Array { walk: self, count: 0 }
    }
}

fn describe(rule: &Rule) -> String {
    match rule {
        Rule::Type(kinds) => format!("is not of type {kinds:?}"),
        Rule::Const(c) => format!("is not {c}"),
        Rule::Enum(options) => format!("is not one of {options:?}"),
        Rule::Minimum(m) => format!("is less than {m}"),
        Rule::Maximum(m) => format!("is more than {m}"),
        Rule::ExclusiveMinimum(m) => format!("is not more than {m}"),
        Rule::ExclusiveMaximum(m) => format!("is not less than {m}"),
        Rule::MinLength(m) => format!("is shorter than {m}"),
        Rule::MaxLength(m) => format!("is longer than {m}"),
        Rule::Pattern(m) => format!("does not match {}", m.pattern),
        Rule::Format(Format::DateTime) => "is not a date-time".into(),
        Rule::Format(Format::Date) => "is not a date".into(),
        Rule::Required(_) => "lacks a required property".into(),
        Rule::Closed(_) => "has a property that is not allowed".into(),
        Rule::AnyOfRequired(_) => "has none of the properties of which one is required".into(),
        Rule::MinProperties(m) => format!("has fewer than {m} properties"),
        Rule::MaxProperties(m) => format!("has more than {m} properties"),
        Rule::MinItems(m) => format!("has fewer than {m} items"),
        Rule::MaxItems(m) => format!("has more than {m} items"),
    }
}

/// RFC 3339 `date-time` (as JSON Schema's format): full-date "T" full-time, with a
/// `Z` or numeric offset; `T` and `Z` in either case; a leap second only at 23:59:60 UTC.
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !is_date_bytes(&b[..10]) || !matches!(b[10], b'T' | b't') {
        return false;
    }
    let rest = &b[11..];
    if !(digits(&rest[0..2]) && rest[2] == b':' && digits(&rest[3..5]) && rest[5] == b':' && digits(&rest[6..8])) {
        return false;
    }
    let (h, m, sec) = (two(&rest[0..2]), two(&rest[3..5]), two(&rest[6..8]));
    if h > 23 || m > 59 || sec > 60 {
        return false;
    }
    let mut i = 8;
    if rest.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while rest.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    let (offset_minutes, ok) = match &rest[i..] {
        [b'Z' | b'z'] => (0, true),
        [sign @ (b'+' | b'-'), oh @ .., b':', m1, m2] if oh.len() == 2 && digits(oh) && digits(&[*m1, *m2]) => {
            let (oh, om) = (two(oh), two(&[*m1, *m2]));
            let minutes = i32::from(oh) * 60 + i32::from(om);
            (if *sign == b'+' { minutes } else { -minutes }, oh <= 23 && om <= 59)
        }
        _ => (0, false),
    };
    if !ok {
        return false;
    }
    if sec == 60 {
        // A leap second is 23:59:60 in UTC.
        let utc = (i32::from(h) * 60 + i32::from(m) - offset_minutes).rem_euclid(24 * 60);
        return utc == 23 * 60 + 59;
    }
    true
}

/// RFC 3339 `full-date`: `YYYY-MM-DD`, a real calendar date.
fn is_date(s: &str) -> bool {
    is_date_bytes(s.as_bytes())
}

fn is_date_bytes(b: &[u8]) -> bool {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(&b[0..4]) || !digits(&b[5..7]) || !digits(&b[8..10]) {
        return false;
    }
    let year = i32::from(two(&b[0..2])) * 100 + i32::from(two(&b[2..4]));
    chrono::NaiveDate::from_ymd_opt(year, u32::from(two(&b[5..7])), u32::from(two(&b[8..10]))).is_some()
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

fn two(b: &[u8]) -> u8 {
    (b[0] - b'0') * 10 + (b[1] - b'0')
}

struct Object<'p, 'f> {
    walk: Walk<'p, 'f>,
    /// Mask of the known names seen.
    seen: u64,
    count: usize,
    /// The first key no rule names.
    unknown: Option<String>,
    /// The node of the value whose key was just given (map entries).
    pending: Option<usize>,
}

impl Object<'_, '_> {
    /// Records `key` and returns the node its value is checked against.
    fn key(&mut self, key: &str) -> Option<usize> {
        self.count += 1;
        let node = &self.walk.plan.nodes[self.walk.node?];
        match node.names.iter().position(|(n, _)| n == key) {
            Some(i) => {
                self.seen |= 1 << i;
                node.names[i].1
            }
            None => {
                if self.unknown.is_none() {
                    self.unknown = Some(key.to_owned());
                }
                None
            }
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Unsupported> {
        let node = self.key(key);
        value.serialize(Walk { plan: self.walk.plan, node, failures: self.walk.failures })
    }

    fn end(mut self) -> Result<(), Unsupported> {
        let Some(node) = self.walk.node.map(|n| &self.walk.plan.nodes[n]) else { return Ok(()) };
        let mut failed = Vec::new();
        for rule in &node.rules {
            let ok = match rule {
                Rule::Required(mask) => self.seen & mask == *mask,
                Rule::Closed(allowed) => self.unknown.is_none() && self.seen & !allowed == 0,
                Rule::AnyOfRequired(masks) => masks.iter().any(|mask| self.seen & mask == *mask),
                Rule::MinProperties(m) => self.count >= *m,
                Rule::MaxProperties(m) => self.count <= *m,
                _ => true,
            };
            if !ok {
                failed.push(describe(rule));
            }
        }
        for f in failed {
            self.walk.fail(f);
        }
        Ok(())
    }
}

struct Array<'p, 'f> {
    walk: Walk<'p, 'f>,
    count: usize,
}

impl Array<'_, '_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.count += 1;
        let node = self.walk.node.and_then(|n| self.walk.plan.nodes[n].items);
        value.serialize(Walk { plan: self.walk.plan, node, failures: self.walk.failures })
    }

    fn end(mut self) -> Result<(), Unsupported> {
        let Some(node) = self.walk.node.map(|n| &self.walk.plan.nodes[n]) else { return Ok(()) };
        let failed: Vec<String> = node
            .rules
            .iter()
            .filter(|rule| match rule {
                Rule::MinItems(m) => self.count < *m,
                Rule::MaxItems(m) => self.count > *m,
                _ => false,
            })
            .map(describe)
            .collect();
        for f in failed {
            self.walk.fail(f);
        }
        Ok(())
    }
}

impl<'p, 'f> ser::Serializer for Walk<'p, 'f> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Array<'p, 'f>;
    type SerializeTuple = Array<'p, 'f>;
    type SerializeTupleStruct = Array<'p, 'f>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Object<'p, 'f>;
    type SerializeStruct = Object<'p, 'f>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.scalar(Scalar::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        // serde_json writes non-negative integers as u64 numbers.
        match u64::try_from(v) {
            Ok(u) => self.scalar(Scalar::Unsigned(u)),
            Err(_) => self.scalar(Scalar::Signed(v)),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.scalar(Scalar::Unsigned(v))
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        // serde_json writes NaN and infinities as null.
        if v.is_finite() { self.scalar(Scalar::Float(v)) } else { self.scalar(Scalar::Null) }
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        self.scalar(Scalar::Str(v.encode_utf8(&mut [0; 4])))
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        self.scalar(Scalar::Str(v))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Unsupported> {
        Err(Unsupported("bytes".into()))
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.scalar(Scalar::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.scalar(Scalar::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.scalar(Scalar::Null)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Unsupported> {
        self.scalar(Scalar::Str(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        let mut object = self.object();
        object.field(variant, value)?;
        object.end()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'p, 'f>, Unsupported> {
        Ok(self.array())
    }
    fn serialize_tuple(self, _: usize) -> Result<Array<'p, 'f>, Unsupported> {
        Ok(self.array())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Array<'p, 'f>, Unsupported> {
        Ok(self.array())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(Unsupported(format!("tuple variant {variant}")))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Object<'p, 'f>, Unsupported> {
        Ok(self.object())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'p, 'f>, Unsupported> {
        Ok(self.object())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(Unsupported(format!("struct variant {variant}")))
    }
}

impl ser::SerializeStruct for Object<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Unsupported> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Unsupported> {
        Object::end(self)
    }
}

impl ser::SerializeMap for Object<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        let name = key.serialize(KeyName)?;
        self.pending = self.key(&name);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        let node = self.pending.take();
        value.serialize(Walk { plan: self.walk.plan, node, failures: self.walk.failures })
    }
    fn end(self) -> Result<(), Unsupported> {
        Object::end(self)
    }
}

macro_rules! array_impl {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Array<'_, '_> {
            type Ok = ();
            type Error = Unsupported;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
                self.item(value)
            }
            fn end(self) -> Result<(), Unsupported> {
                Array::end(self)
            }
        }
    )*};
}
array_impl!(SerializeSeq::serialize_element, SerializeTuple::serialize_element, SerializeTupleStruct::serialize_field);

/// Serializer methods of [`KeyName`] for values that cannot be a key.
macro_rules! refuse_keys {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, _: $ty) -> Result<Self::Ok, Unsupported> {
            Err(not_a_key())
        }
    )*};
}

/// Map keys: strings only (as `serde_json` requires of our types).
struct KeyName;

impl ser::Serializer for KeyName {
    type Ok = std::borrow::Cow<'static, str>;
    type Error = Unsupported;
    type SerializeSeq = Impossible<Self::Ok, Unsupported>;
    type SerializeTuple = Impossible<Self::Ok, Unsupported>;
    type SerializeTupleStruct = Impossible<Self::Ok, Unsupported>;
    type SerializeTupleVariant = Impossible<Self::Ok, Unsupported>;
    type SerializeMap = Impossible<Self::Ok, Unsupported>;
    type SerializeStruct = Impossible<Self::Ok, Unsupported>;
    type SerializeStructVariant = Impossible<Self::Ok, Unsupported>;

    fn serialize_str(self, v: &str) -> Result<Self::Ok, Unsupported> {
        Ok(v.to_owned().into())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<Self::Ok, Unsupported> {
        Ok(variant.into())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<Self::Ok, Unsupported> {
        v.serialize(self)
    }
    refuse_keys! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64), serialize_f32(f32),
        serialize_f64(f64), serialize_char(char), serialize_bytes(&[u8])
    }
    fn serialize_none(self) -> Result<Self::Ok, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Self::Ok, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<Self::Ok, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Self::Ok, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Unsupported> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(not_a_key())
    }
}

fn not_a_key() -> Unsupported {
    Unsupported("a map key that is not a string".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct matchers agree with the regex engine on every pattern shape they take.
    #[test]
    fn direct_patterns_agree_with_the_regex_engine() {
        let patterns = ["Z$", "$", "^[0-9a-f]{32}$", "^[A-Za-z0-9_-]{1,32}$", "^[a-]+$", "^[-a]*$", "^[x]{2}$"];
        let inputs = [
            "",
            "Z",
            "z",
            "aZ",
            "Z\n",
            "2026-11-30T10:00:00Z",
            "-",
            "a",
            "aa",
            "x",
            "xx",
            "xxx",
            "a-a",
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdeF",
            "0123456789abcdef0123456789abcde",
            "epoch_1-A",
            "é",
            "0123456789012345678901234567890123",
            "a\nb",
        ];
        for pattern in patterns {
            let matcher = Matcher::new(pattern).unwrap();
            assert!(!matches!(matcher.shape, Shape::Regex(_)), "{pattern} is matched directly");
            let regex = Regex::new(pattern).unwrap();
            for input in inputs {
                assert_eq!(matcher.is_match(input), regex.is_match(input), "{pattern} on {input:?}");
            }
        }
        assert!(matches!(Matcher::new("^[0-9]+\\.[0-9]+$").unwrap().shape, Shape::Regex(_)));
        assert!(matches!(Matcher::new("^[^a]+$").unwrap().shape, Shape::Regex(_)));
        // Escapes that ECMA-262 and Rust read differently send the type to the full validator.
        assert!(Matcher::new("^\\d+$").is_err());
        assert!(Matcher::new("^(x&&y)+$").is_err());
        // In the direct class, `&` is a character, as in ECMA-262.
        assert!(Matcher::new("^[a&&b]+$").unwrap().is_match("a&b"));
    }
}
