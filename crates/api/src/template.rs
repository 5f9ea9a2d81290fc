//! The part of Go's `text/template` that Knative's templates use:
//! `domain-template`, `tag-template` (config-network) and the container name
//! templates (config-defaults). Supported: text, field chains (`{{.Name}}`,
//! `{{.Annotations.key}}`), string and integer literals, the functions
//! `index`, `print`, `printf` and `len`, pipelines (`|`), comments and the
//! `{{-`/`-}}` trim markers. Control structures (`if`, `range`, ...) are
//! refused at parse time with a message that says so. Errors read like Go's
//! (`template: domain-template:1:2: executing ... at <.Nme>: can't evaluate
//! field Nme in type ...`).

use std::collections::BTreeMap;

/// A value templates are executed over.
#[derive(Debug, Clone, PartialEq)]
pub enum TValue {
    Str(String),
    Int(i64),
    /// A `map[string]string`; `None` is a nil map.
    Map(Option<BTreeMap<String, String>>),
    /// A struct with Go type name `type_name` (for error messages).
    Struct {
        type_name: &'static str,
        fields: BTreeMap<&'static str, TValue>,
    },
    /// A missing map key: prints as `<no value>`.
    Missing,
}

impl TValue {
    fn type_name(&self) -> String {
        match self {
            TValue::Str(_) => "string".into(),
            TValue::Int(_) => "int".into(),
            TValue::Map(_) => "map[string]string".into(),
            TValue::Struct { type_name, .. } => (*type_name).into(),
            TValue::Missing => "<nil>".into(),
        }
    }

    fn print(&self) -> String {
        match self {
            TValue::Str(s) => s.clone(),
            TValue::Int(i) => i.to_string(),
            TValue::Map(m) => {
                let items: Vec<String> = m
                    .iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect();
                format!("map[{}]", items.join(" "))
            }
            TValue::Struct { fields, .. } => {
                let items: Vec<String> = fields.values().map(TValue::print).collect();
                format!("{{{}}}", items.join(" "))
            }
            TValue::Missing => "<no value>".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.A.B` (empty = `.`), with its byte position.
    Field(Vec<String>, usize),
    Str(String),
    Int(i64),
    Func(String, usize),
}

#[derive(Debug, Clone, PartialEq)]
struct Command {
    args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action {
        pipeline: Vec<Command>,
        text: String,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    name: String,
    source: String,
    nodes: Vec<Node>,
}

const FUNCS: &[&str] = &["index", "print", "printf", "len"];
const GO_BUILTINS: &[&str] = &[
    "and", "call", "html", "js", "not", "or", "println", "urlquery", "eq", "ge", "gt", "le", "lt",
    "ne", "slice",
];
const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

impl Template {
    pub fn parse(name: &str, source: &str) -> Result<Template, String> {
        let mut nodes = Vec::new();
        let mut rest = source;
        let mut offset = 0usize;
        let mut trim_next_text = false;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                push_text(&mut nodes, rest, trim_next_text, false);
                break;
            };
            let after_open = &rest[open + 2..];
            let trim_left = after_open.starts_with("- ")
                || after_open.starts_with("-\t")
                || after_open.starts_with("-\n");
            push_text(&mut nodes, &rest[..open], trim_next_text, trim_left);
            let body_start = open + 2 + if trim_left { 2 } else { 0 };
            let line = 1 + source[..offset + open].matches('\n').count();
            let Some(close) = rest[body_start..].find("}}") else {
                return Err(format!("template: {name}:{line}: unclosed action"));
            };
            let mut body = &rest[body_start..body_start + close];
            let trim_right = body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-");
            if trim_right {
                body = &body[..body.len() - 2];
            }
            let body_offset = offset + body_start;
            let trimmed = body.trim();
            if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
                let pipeline = parse_pipeline(name, source, body, body_offset)?;
                nodes.push(Node::Action {
                    pipeline,
                    text: trimmed.to_string(),
                });
            }
            trim_next_text = trim_right;
            let consumed = body_start + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        Ok(Template {
            name: name.to_string(),
            source: source.to_string(),
            nodes,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Execute over `data`.
    pub fn execute(&self, data: &TValue) -> Result<String, String> {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action { pipeline, .. } => {
                    let mut prev: Option<TValue> = None;
                    for cmd in pipeline {
                        prev = Some(self.eval_command(cmd, data, prev)?);
                    }
                    if let Some(v) = prev {
                        out.push_str(&v.print());
                    }
                }
            }
        }
        Ok(out)
    }

    fn location(&self, pos: usize) -> String {
        let before = &self.source[..pos.min(self.source.len())];
        let line = 1 + before.matches('\n').count();
        let col = match before.rfind('\n') {
            Some(i) => pos - i - 1,
            None => pos,
        };
        format!("{}:{line}:{col}", self.name)
    }

    fn exec_error(&self, pos: usize, context: &str, msg: &str) -> String {
        format!(
            "template: {}: executing {} at <{context}>: {msg}",
            self.location(pos),
            crate::go::quote(&self.name)
        )
    }

    fn eval_arg(&self, a: &Arg, data: &TValue) -> Result<TValue, String> {
        match a {
            Arg::Str(s) => Ok(TValue::Str(s.clone())),
            Arg::Int(i) => Ok(TValue::Int(*i)),
            Arg::Field(chain, pos) => {
                let mut v = data.clone();
                for (i, f) in chain.iter().enumerate() {
                    let context = format!(".{}", chain[..=i].join("."));
                    v = match v {
                        TValue::Struct { type_name, fields } => match fields.get(f.as_str()) {
                            Some(x) => x.clone(),
                            None => {
                                return Err(self.exec_error(
                                    *pos,
                                    &context,
                                    &format!("can't evaluate field {f} in type {type_name}"),
                                ));
                            }
                        },
                        TValue::Map(m) => m
                            .as_ref()
                            .and_then(|m| m.get(f))
                            .map(|s| TValue::Str(s.clone()))
                            .unwrap_or(TValue::Missing),
                        TValue::Missing => {
                            return Err(self.exec_error(
                                *pos,
                                &context,
                                &format!("nil pointer evaluating interface {{}}.{f}"),
                            ));
                        }
                        other => {
                            return Err(self.exec_error(
                                *pos,
                                &context,
                                &format!("can't evaluate field {f} in type {}", other.type_name()),
                            ));
                        }
                    };
                }
                Ok(v)
            }
            Arg::Func(name, pos) => self.call(name, *pos, &[]),
        }
    }

    fn eval_command(
        &self,
        cmd: &Command,
        data: &TValue,
        piped: Option<TValue>,
    ) -> Result<TValue, String> {
        match &cmd.args[0] {
            Arg::Func(name, pos) => {
                let mut args = Vec::new();
                for a in &cmd.args[1..] {
                    args.push(self.eval_arg(a, data)?);
                }
                args.extend(piped);
                self.call(name, *pos, &args)
            }
            a => {
                if cmd.args.len() > 1 || piped.is_some() {
                    let pos = match a {
                        Arg::Field(_, p) => *p,
                        _ => 0,
                    };
                    return Err(format!(
                        "template: {}: can't give argument to non-function",
                        self.location(pos)
                    ));
                }
                self.eval_arg(a, data)
            }
        }
    }

    fn call(&self, name: &str, pos: usize, args: &[TValue]) -> Result<TValue, String> {
        let err = |msg: String| {
            format!(
                "template: {}: executing {} at <{name}>: {msg}",
                self.location(pos),
                crate::go::quote(&self.name)
            )
        };
        match name {
            "index" => {
                let Some((first, keys)) = args.split_first() else {
                    return Err(err(
                        "wrong number of args for index: want at least 1 got 0".into()
                    ));
                };
                let mut v = first.clone();
                for k in keys {
                    v = match (&v, k) {
                        (TValue::Map(m), TValue::Str(key)) => TValue::Str(
                            m.as_ref()
                                .and_then(|m| m.get(key))
                                .cloned()
                                .unwrap_or_default(),
                        ),
                        (TValue::Map(_), other) => {
                            return Err(err(format!(
                                "error calling index: value has type {}; should be string",
                                other.type_name()
                            )));
                        }
                        (other, _) => {
                            return Err(err(format!(
                                "error calling index: can't index item of type {}",
                                other.type_name()
                            )));
                        }
                    };
                }
                Ok(v)
            }
            "len" => match args {
                [TValue::Str(s)] => Ok(TValue::Int(s.len() as i64)),
                [TValue::Map(m)] => Ok(TValue::Int(m.as_ref().map_or(0, |m| m.len()) as i64)),
                [other] => Err(err(format!(
                    "error calling len: len of type {}",
                    other.type_name()
                ))),
                _ => Err(err(format!(
                    "wrong number of args for len: want 1 got {}",
                    args.len()
                ))),
            },
            "print" => {
                // Go's Sprint: a space between operands when neither is a string.
                let mut out = String::new();
                for (i, a) in args.iter().enumerate() {
                    let is_str = |v: &TValue| matches!(v, TValue::Str(_));
                    if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
                        out.push(' ');
                    }
                    out.push_str(&a.print());
                }
                Ok(TValue::Str(out))
            }
            "printf" => {
                let Some((TValue::Str(fmt), rest)) = args.split_first() else {
                    return Err(err("printf needs a format string".into()));
                };
                Ok(TValue::Str(sprintf(fmt, rest)))
            }
            other => Err(err(format!("function {other:?} not defined"))),
        }
    }
}

fn sprintf(fmt: &str, args: &[TValue]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'd' | 'q')) => match next.next() {
                Some(a) => {
                    let s = a.print();
                    if verb == 'q' {
                        out.push_str(&crate::go::quote(&s));
                    } else {
                        out.push_str(&s);
                    }
                }
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            Some(verb) => out.push_str(&format!("%!{verb}(skiff: unsupported verb)")),
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

fn push_text(nodes: &mut Vec<Node>, text: &str, trim_start: bool, trim_end: bool) {
    let mut t = text;
    if trim_start {
        t = t.trim_start();
    }
    if trim_end {
        t = t.trim_end();
    }
    if !t.is_empty() {
        nodes.push(Node::Text(t.to_string()));
    }
}

fn parse_pipeline(
    name: &str,
    source: &str,
    body: &str,
    body_offset: usize,
) -> Result<Vec<Command>, String> {
    let line = |pos: usize| 1 + source[..pos.min(source.len())].matches('\n').count();
    let mut cmds = Vec::new();
    let mut args = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let pos = body_offset + i;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'|' {
            if args.is_empty() {
                return Err(format!("template: {name}:{}: missing command", line(pos)));
            }
            cmds.push(Command {
                args: std::mem::take(&mut args),
            });
            i += 1;
        } else if c == b'.' {
            let start = i;
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
            {
                i += 1;
            }
            let chain: Vec<String> = body[start + 1..i]
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            args.push(Arg::Field(chain, pos));
        } else if c == b'"' || c == b'`' {
            let quote = c;
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            while i < bytes.len() {
                let b = bytes[i];
                if b == quote {
                    closed = true;
                    i += 1;
                    break;
                }
                if b == b'\\' && quote == b'"' && i + 1 < bytes.len() {
                    let e = bytes[i + 1];
                    s.push(match e {
                        b'n' => '\n',
                        b't' => '\t',
                        other => other as char,
                    });
                    i += 2;
                    continue;
                }
                let ch = body[i..].chars().next().expect("in bounds");
                s.push(ch);
                i += ch.len_utf8();
            }
            if !closed {
                return Err(format!(
                    "template: {name}:{}: unterminated quoted string",
                    line(pos)
                ));
            }
            args.push(Arg::Str(s));
        } else if c.is_ascii_digit() || c == b'-' || c == b'+' {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            match body[start..i].parse::<i64>() {
                Ok(n) => args.push(Arg::Int(n)),
                Err(_) => {
                    return Err(format!(
                        "template: {name}:{}: bad number syntax: {:?}",
                        line(pos),
                        &body[start..i]
                    ));
                }
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &body[start..i];
            if KEYWORDS.contains(&word) {
                return Err(format!(
                    "template: {name}:{}: Skiff's template engine does not support {{{{{word}}}}}: use fields, index, print or printf",
                    line(pos)
                ));
            }
            if GO_BUILTINS.contains(&word) {
                return Err(format!(
                    "template: {name}:{}: Skiff's template engine does not support the function {word:?}: use index, print, printf or len",
                    line(pos)
                ));
            }
            if !FUNCS.contains(&word) {
                return Err(format!(
                    "template: {name}:{}: function {word:?} not defined",
                    line(pos)
                ));
            }
            args.push(Arg::Func(word.to_string(), pos));
        } else if c == b'$' {
            return Err(format!(
                "template: {name}:{}: Skiff's template engine does not support variables",
                line(pos)
            ));
        } else {
            let ch = body[i..].chars().next().expect("in bounds");
            return Err(format!(
                "template: {name}:{}: unexpected {:?} in command",
                line(pos),
                ch.to_string()
            ));
        }
    }
    if args.is_empty() {
        let pos = body_offset;
        return Err(format!(
            "template: {name}:{}: missing value for command",
            line(pos)
        ));
    }
    cmds.push(Command { args });
    Ok(cmds)
}

/// Values of Knative's `DomainTemplateValues`.
pub fn domain_values(
    name: &str,
    namespace: &str,
    domain: &str,
    annotations: Option<&BTreeMap<String, String>>,
    labels: Option<&BTreeMap<String, String>>,
) -> TValue {
    TValue::Struct {
        type_name: "config.DomainTemplateValues",
        fields: BTreeMap::from([
            ("Name", TValue::Str(name.into())),
            ("Namespace", TValue::Str(namespace.into())),
            ("Domain", TValue::Str(domain.into())),
            ("Annotations", TValue::Map(annotations.cloned())),
            ("Labels", TValue::Map(labels.cloned())),
        ]),
    }
}

/// Values of Knative's `TagTemplateValues`.
pub fn tag_values(name: &str, tag: &str) -> TValue {
    TValue::Struct {
        type_name: "config.TagTemplateValues",
        fields: BTreeMap::from([
            ("Name", TValue::Str(name.into())),
            ("Tag", TValue::Str(tag.into())),
        ]),
    }
}

/// An `ObjectMeta` (the parent of a revision template) as template data.
pub fn object_meta_values(meta: &crate::meta::ObjectMeta) -> TValue {
    let map = |m: &BTreeMap<String, String>| TValue::Map((!m.is_empty()).then(|| m.clone()));
    TValue::Struct {
        type_name: "v1.ObjectMeta",
        fields: BTreeMap::from([
            ("Name", TValue::Str(meta.name.clone())),
            (
                "GenerateName",
                TValue::Str(meta.generate_name.clone().unwrap_or_default()),
            ),
            ("Namespace", TValue::Str(meta.namespace.clone())),
            ("UID", TValue::Str(meta.uid.clone())),
            (
                "ResourceVersion",
                TValue::Str(meta.resource_version.clone()),
            ),
            ("Generation", TValue::Int(meta.generation)),
            ("Labels", map(&meta.labels)),
            ("Annotations", map(&meta.annotations)),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, data: &TValue) -> Result<String, String> {
        Template::parse("domain-template", src)?.execute(data)
    }

    #[test]
    fn knatives_templates() {
        let ann = BTreeMap::from([("sub".to_string(), "x".to_string())]);
        let d = domain_values("hello", "default", "example.com", Some(&ann), None);
        assert_eq!(
            run("{{.Name}}.{{.Namespace}}.{{.Domain}}", &d).unwrap(),
            "hello.default.example.com"
        );
        assert_eq!(
            run("{{.Name}}-{{.Namespace}}.{{ .Domain }}", &d).unwrap(),
            "hello-default.example.com"
        );
        assert_eq!(
            run("{{.Name}}.{{index .Annotations \"sub\"}}.{{.Domain}}", &d).unwrap(),
            "hello.x.example.com"
        );
        assert_eq!(run("{{.Annotations.sub}}", &d).unwrap(), "x");
        assert_eq!(run("{{.Labels.nope}}", &d).unwrap(), "<no value>");
        assert_eq!(run("{{index .Labels \"nope\"}}", &d).unwrap(), "");
        assert_eq!(
            run("{{printf \"%s--%s\" .Name .Namespace}}", &d).unwrap(),
            "hello--default"
        );
        assert_eq!(run("{{.Name | printf \"%s-x\"}}", &d).unwrap(), "hello-x");
        assert_eq!(run("a {{- .Name -}} b", &d).unwrap(), "ahellob");
        assert_eq!(run("{{/* c */}}{{.Name}}", &d).unwrap(), "hello");
        let t = tag_values("hello", "v2");
        assert_eq!(
            Template::parse("tag-template", "{{.Tag}}-{{.Name}}")
                .unwrap()
                .execute(&t)
                .unwrap(),
            "v2-hello"
        );
    }

    #[test]
    fn errors_read_like_go() {
        let d = domain_values("foo", "bar", "baz.com", None, None);
        assert_eq!(
            run("{{.Nme}}", &d).unwrap_err(),
            "template: domain-template:1:2: executing \"domain-template\" at <.Nme>: can't evaluate field Nme in type config.DomainTemplateValues"
        );
        assert_eq!(
            run("{{.Name}}.{{.Foo}}", &d).unwrap_err(),
            "template: domain-template:1:12: executing \"domain-template\" at <.Foo>: can't evaluate field Foo in type config.DomainTemplateValues"
        );
        assert!(
            Template::parse("t", "{{.Name")
                .unwrap_err()
                .contains("unclosed action")
        );
        assert!(
            Template::parse("t", "{{foo .Name}}")
                .unwrap_err()
                .contains("function \"foo\" not defined")
        );
        assert!(
            Template::parse("t", "{{if .Name}}x{{end}}")
                .unwrap_err()
                .contains("does not support {{if}}")
        );
    }
}
