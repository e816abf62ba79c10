//! Phase one of validation: parse the TOML, check every component's structure and the graph,
//! collecting every problem with its location.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_spanned_compat::Spanned;
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diag::{Diagnostics, SourceMap};
use crate::graph::Graph;
use crate::model::*;

mod serde_spanned_compat {
    pub use toml::Spanned;
}

/// A config file that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The result of phase one: the config (components that failed their checks are left out),
/// the source map for locating later diagnostics, and every problem found.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The pipeline, as far as it could be read.
    pub config: PipelineConfig,
    /// Locates key paths in the file.
    pub map: SourceMap,
    /// Every problem found so far.
    pub diagnostics: Diagnostics,
}

/// Reads and checks a pipeline file.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(load_str(path, &text))
}

const TOP_KEYS: &[&str] = &[
    "pipeline",
    "sources",
    "transforms",
    "sinks",
    "danger",
    "detection",
];

/// Checks a pipeline given as text; `path` names it in diagnostics and anchors relative paths.
pub fn load_str(path: &Path, text: &str) -> Loaded {
    let base_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    let mut config = PipelineConfig {
        file: path.to_path_buf(),
        base_dir,
        hash,
        pipeline: PipelineSection {
            name: String::new(),
            description: None,
            tags: Vec::new(),
            quarantine: QuarantineConfig::default(),
            preserve_order: true,
            batch_size: None,
        },
        sources: Vec::new(),
        transforms: Vec::new(),
        sinks: Vec::new(),
        danger: crate::DangerSection::default(),
        detection: crate::DetectionSection::default(),
    };
    let mut diags = Diagnostics::default();

    let root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let map = SourceMap::new(path.to_path_buf(), text.to_string(), Vec::new());
            let offset = e.span().map_or(0, |s| s.start);
            diags.push(map.error_at_offset(
                "",
                offset,
                format!("invalid TOML: {}", e.message().trim()),
            ));
            return Loaded {
                config,
                map,
                diagnostics: diags,
            };
        }
    };
    let mut keys = Vec::new();
    collect_keys(root.get_ref(), "", &mut keys);
    let map = SourceMap::new(path.to_path_buf(), text.to_string(), keys);
    let mut strings = Vec::new();
    collect_strings(root.get_ref(), "", &mut strings);
    for (key, value) in &strings {
        if let Err(e) = crate::secret::parse(value) {
            diags.push(map.error_at(key, e.to_string()));
        } else if let Some(m) = crate::secret::literal_credential(key, value) {
            diags.push(map.error_at(key, m));
        }
    }
    let root = root.into_inner();

    for (k, _) in root.iter() {
        let k = k.get_ref().as_ref();
        if !TOP_KEYS.contains(&k) {
            let mut msg = format!(
                "unknown top-level key \"{k}\"; expected one of {}",
                TOP_KEYS.join(", ")
            );
            if let Some(s) = custos_core::did_you_mean(k, TOP_KEYS.iter().copied()) {
                msg.push_str(&format!("; did you mean \"{s}\"?"));
            }
            diags.push(map.error_at_key(k, msg));
        }
    }

    match root.get("pipeline") {
        None => diags.push(map.error_at_offset(
            "pipeline",
            0,
            "missing [pipeline] table (it needs at least `name`)".into(),
        )),
        Some(v) => {
            if let Some(p) = deserialize::<PipelineSection>(v.clone(), "pipeline", &map, &mut diags)
            {
                check_pipeline(&p, &map, &mut diags);
                config.pipeline = p;
            }
        }
    }

    if let Some(v) = root.get("danger")
        && let Some(d) = deserialize::<crate::DangerSection>(v.clone(), "danger", &map, &mut diags)
    {
        for (i, e) in d.allow_plaintext.iter().enumerate() {
            if !e
                .split_once('.')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            {
                diags.push(map.error_at(
                    &format!("danger.allow_plaintext[{i}]"),
                    format!("\"{e}\" must be SINK.COLUMN (or SINK.*)"),
                ));
            }
        }
        config.danger = d;
    }

    if let Some(v) = root.get("detection")
        && let Some(d) =
            deserialize::<crate::DetectionSection>(v.clone(), "detection", &map, &mut diags)
    {
        match custos_detect::Detector::new(d.detector_config()) {
            Ok(_) => config.detection = d,
            Err(e) => diags.push(map.error_at("detection.custom", e.to_string())),
        }
    }
    let custom_names: Vec<String> = config
        .detection
        .custom
        .iter()
        .map(|c| c.name.clone())
        .collect();

    // Every declared name, including components whose options are wrong, so that a broken
    // component does not also produce "no component named" errors downstream.
    let mut names: Vec<(String, String)> = Vec::new();
    // (section, name, inputs) of every transform and sink whose `inputs` could be read, even
    // when the rest of the component is wrong, so graph checks see the whole graph.
    let mut edges: Vec<(&'static str, String, Vec<String>)> = Vec::new();
    for section in ["sources", "transforms", "sinks"] {
        let Some(v) = root.get(section) else { continue };
        let DeValue::Table(t) = v.get_ref() else {
            diags.push(map.error_at(
                section,
                format!("`{section}` must be a table of named components"),
            ));
            continue;
        };
        for (name, comp) in t.iter() {
            let name = name.get_ref().to_string();
            let key = format!("{section}.{name}");
            if let Some((_, other)) = names.iter().find(|(n, _)| *n == name) {
                diags.push(map.error_at_key(
                    &key,
                    format!("component name \"{name}\" is already used by {other}.{name}; names are shared by sources, transforms and sinks"),
                ));
                continue;
            }
            names.push((name.clone(), section.to_string()));
            if !valid_name(&name) {
                diags.push(map.error_at_key(
                    &key,
                    format!("invalid component name \"{name}\": use letters, digits and underscores, starting with a letter (it is also the SQL table name)"),
                ));
                continue;
            }
            let DeValue::Table(ct) = comp.get_ref() else {
                diags.push(map.error_at(&key, "a component must be a table".to_string()));
                continue;
            };
            let span = comp.span();
            match section {
                "sources" => {
                    if let Some(kind) = source_kind(ct, span, &key, &map, &mut diags) {
                        config.sources.push(Source { name, kind });
                    }
                }
                "transforms" => {
                    let inputs = inputs_of(ct, &key, &map, &mut diags);
                    if let Some(i) = &inputs {
                        edges.push(("transforms", name.clone(), i.clone()));
                    }
                    if let (Some(kind), Some(inputs)) = (
                        transform_kind(ct, span, &key, &custom_names, &map, &mut diags),
                        inputs,
                    ) {
                        config.transforms.push(Transform { name, inputs, kind });
                    }
                }
                _ => {
                    let inputs = inputs_of(ct, &key, &map, &mut diags);
                    if let Some(i) = &inputs {
                        edges.push(("sinks", name.clone(), i.clone()));
                    }
                    if let (Some(kind), Some(inputs)) =
                        (sink_kind(ct, span, &key, &map, &mut diags), inputs)
                    {
                        if inputs.len() > 1 {
                            diags.push(map.error_at(
                                &format!("{key}.inputs"),
                                "a sink takes exactly one input; combine several with a `sql` transform (UNION ALL)".to_string(),
                            ));
                        }
                        config.sinks.push(Sink { name, inputs, kind });
                    }
                }
            }
        }
    }
    if names.iter().all(|(_, s)| s != "sources") && !root.contains_key("sources") {
        diags.push(map.error_at_offset(
            "sources",
            0,
            "no sources: declare at least one [sources.NAME] table".into(),
        ));
    }
    if names.iter().all(|(_, s)| s != "sinks") && !root.contains_key("sinks") {
        diags.push(map.error_at_offset(
            "sinks",
            0,
            "no sinks: declare at least one [sinks.NAME] table".into(),
        ));
    }

    // Paths are not secrets: their references (`${env:DATA_DIR}/in.csv`) are resolved here, so
    // validation can look at the files; a missing variable is reported at the key.
    let base = config.base_dir.clone();
    let paths = config
        .sources
        .iter_mut()
        .filter_map(|s| Some((format!("sources.{}.path", s.name), s.kind.path_mut()?)))
        .chain(
            config
                .sinks
                .iter_mut()
                .filter_map(|s| Some((format!("sinks.{}.path", s.name), s.kind.path_mut()?))),
        );
    for (key, path) in paths {
        if let Ok(t) = crate::secret::parse(path)
            && t.has_refs()
        {
            match t.resolve(&base) {
                Ok((v, _)) => *path = v.expose().to_string(),
                Err(e) => diags.push(map.error_at(&key, e.to_string())),
            }
        }
    }

    // Unverified database connections are refused unless the pipeline opts in under [danger].
    for (key, c) in config.connections() {
        if c.sslmode != "verify-full"
            && crate::postgres::SSL_MODES.contains(&c.sslmode.as_str())
            && !config.danger.allow_insecure_db
        {
            diags.push(map.error_at(
                &format!("{key}.sslmode"),
                format!(
                    "sslmode \"{}\" does not verify the server; use \"verify-full\" (with ca_file), or allow it explicitly with [danger] allow_insecure_db = true",
                    c.sslmode
                ),
            ));
        }
    }

    Graph::check(&edges, &names, &map, &mut diags);
    Loaded {
        config,
        map,
        diagnostics: diags,
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_pipeline(p: &PipelineSection, map: &SourceMap, diags: &mut Diagnostics) {
    if p.name.trim().is_empty() {
        diags.push(map.error_at(
            "pipeline.name",
            "pipeline name must not be empty".to_string(),
        ));
    }
    if let Some(r) = p.quarantine.max_ratio
        && !(0.0..=1.0).contains(&r)
    {
        diags.push(map.error_at(
            "pipeline.quarantine.max_ratio",
            format!("must be between 0.0 and 1.0, got {r}"),
        ));
    }
    if p.batch_size == Some(0) {
        diags.push(map.error_at("pipeline.batch_size", "must be at least 1".to_string()));
    }
}

/// Every string value with its key path, for the reference and credential checks.
fn collect_strings(t: &DeTable<'_>, prefix: &str, out: &mut Vec<(String, String)>) {
    fn value(v: &DeValue<'_>, path: String, out: &mut Vec<(String, String)>) {
        match v {
            DeValue::String(s) => out.push((path, s.to_string())),
            DeValue::Table(t) => collect_strings(t, &path, out),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    value(item.get_ref(), format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    for (k, v) in t.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        value(v.get_ref(), path, out);
    }
}

/// Records every key path with its key and value spans.
fn collect_keys(
    t: &DeTable<'_>,
    prefix: &str,
    out: &mut Vec<(String, Range<usize>, Range<usize>)>,
) {
    for (k, v) in t.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.push((path.clone(), k.span(), v.span()));
        collect_value(v, &path, out);
    }
}

fn collect_value(
    v: &Spanned<DeValue<'_>>,
    path: &str,
    out: &mut Vec<(String, Range<usize>, Range<usize>)>,
) {
    match v.get_ref() {
        DeValue::Table(t) => collect_keys(t, path, out),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push((p.clone(), item.span(), item.span()));
                collect_value(item, &p, out);
            }
        }
        _ => {}
    }
}

fn type_tag(
    t: &DeTable<'_>,
    key: &str,
    allowed: &[&str],
    what: &str,
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<String> {
    let Some(v) = t.get("type") else {
        diags.push(map.error_at_key(
            key,
            format!("missing `type`; expected one of {}", quoted(allowed)),
        ));
        return None;
    };
    let DeValue::String(s) = v.get_ref() else {
        diags.push(map.error_at(
            &format!("{key}.type"),
            "`type` must be a string".to_string(),
        ));
        return None;
    };
    if !allowed.contains(&s.as_ref()) {
        let mut msg = format!(
            "unknown {what} type \"{s}\"; expected one of {}",
            quoted(allowed)
        );
        if let Some(d) = custos_core::did_you_mean(s, allowed.iter().copied()) {
            msg.push_str(&format!("; did you mean \"{d}\"?"));
        }
        diags.push(map.error_at(&format!("{key}.type"), msg));
        return None;
    }
    Some(s.to_string())
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn inputs_of(
    t: &DeTable<'_>,
    key: &str,
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<Vec<String>> {
    let ikey = format!("{key}.inputs");
    let Some(v) = t.get("inputs") else {
        diags.push(map.error_at_key(
            key,
            "missing `inputs`: name the components that feed this one".to_string(),
        ));
        return None;
    };
    let DeValue::Array(a) = v.get_ref() else {
        diags.push(map.error_at(
            &ikey,
            "`inputs` must be an array of component names".to_string(),
        ));
        return None;
    };
    if a.is_empty() {
        diags.push(map.error_at(
            &ikey,
            "`inputs` must name at least one component".to_string(),
        ));
        return None;
    }
    let mut out = Vec::new();
    for (i, item) in a.iter().enumerate() {
        match item.get_ref() {
            DeValue::String(s) => out.push(s.to_string()),
            _ => {
                diags.push(map.error_at(
                    &format!("{ikey}[{i}]"),
                    "input must be a component name (a string)".to_string(),
                ));
                return None;
            }
        }
    }
    Some(out)
}

/// The component table without the outer keys, ready for the kind's own struct.
fn inner<'i>(t: &DeTable<'i>, span: Range<usize>, strip: &[&str]) -> Spanned<DeValue<'i>> {
    let mut rest: DeTable<'i> = DeTable::new();
    for (k, v) in t.iter() {
        if strip.contains(&k.get_ref().as_ref()) {
            continue;
        }
        rest.insert(k.clone(), v.clone());
    }
    Spanned::new(span, DeValue::Table(rest))
}

/// Deserializes one component with span-carrying errors mapped to key paths.
fn deserialize<T: DeserializeOwned>(
    v: Spanned<DeValue<'_>>,
    key: &str,
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<T> {
    let de = ValueDeserializer::from(v);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let raw = inner.message().trim().to_string();
            let mut full = if path == "." || path.is_empty() {
                key.to_string()
            } else {
                format!("{key}.{path}")
            };
            let message = if let Some(field) = backticked(&raw, "unknown field `") {
                if !full.ends_with(&format!(".{field}")) {
                    full = format!("{full}.{field}");
                }
                let expected: Vec<&str> = raw.split('`').skip(3).step_by(2).collect();
                let mut m = format!("unknown key \"{field}\"");
                if !expected.is_empty() {
                    m.push_str(&format!("; expected one of {}", quoted(&expected)));
                }
                if let Some(d) = custos_core::did_you_mean(&field, expected.iter().copied()) {
                    m.push_str(&format!("; did you mean \"{d}\"?"));
                }
                m
            } else if let Some(field) = backticked(&raw, "missing field `") {
                format!("missing required key \"{field}\"")
            } else if raw.starts_with("invalid type") || raw.starts_with("invalid value") {
                raw.replace('`', "")
            } else {
                raw.replace('`', "\"")
            };
            let d = match (backticked(&raw, "unknown field `"), inner.span()) {
                (Some(_), _) if map.key_span(&full).is_some() => map.error_at_key(&full, message),
                (_, Some(span)) if map.key_at(&span).is_some_and(|k| k.len() > key.len()) => {
                    map.error_at_offset(&full, span.start, message)
                }
                _ => map.error_at_key(&full, message),
            };
            diags.push(d);
            None
        }
    }
}

fn backticked(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?;
    Some(rest[..rest.find('`')?].to_string())
}

fn source_kind(
    t: &DeTable<'_>,
    span: Range<usize>,
    key: &str,
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<SourceKind> {
    if t.contains_key("inputs") {
        diags.push(map.error_at_key(
            &format!("{key}.inputs"),
            "sources read files or databases and take no `inputs`".to_string(),
        ));
    }
    let ty = type_tag(t, key, SourceKind::TYPES, "source", map, diags)?;
    let v = inner(t, span, &["type", "inputs"]);
    let kind = match ty.as_str() {
        "csv" => {
            let c: CsvSource = deserialize(v, key, map, diags)?;
            let mut ok = true;
            for (opt, val) in [("delimiter", &c.delimiter), ("quote", &c.quote)] {
                if single_byte(val).is_none() {
                    diags.push(map.error_at(
                        &format!("{key}.{opt}"),
                        format!("`{opt}` must be a single ASCII character"),
                    ));
                    ok = false;
                }
            }
            if c.delimiter == c.quote {
                diags.push(map.error_at(
                    &format!("{key}.quote"),
                    "`quote` must differ from `delimiter`".to_string(),
                ));
                ok = false;
            }
            if c.max_record_bytes < 1024 {
                diags.push(map.error_at(
                    &format!("{key}.max_record_bytes"),
                    "must be at least 1024".to_string(),
                ));
                ok = false;
            }
            if !c.header && c.schema.is_none() {
                diags.push(map.error_at_key(key, "a CSV source without a header needs a `schema` (column names come from it)".to_string()));
                ok = false;
            }
            ok.then_some(SourceKind::Csv(c))?
        }
        "jsonl" => SourceKind::Jsonl(deserialize(v, key, map, diags)?),
        "postgres" => {
            let p: crate::PostgresSource = deserialize(v, key, map, diags)?;
            let problems = crate::postgres::check_source(&p);
            for (k, m) in &problems {
                diags.push(at_key(map, key, k, m.clone()));
            }
            return problems
                .is_empty()
                .then(|| SourceKind::Postgres(Box::new(p)));
        }
        _ => SourceKind::Parquet(deserialize(v, key, map, diags)?),
    };
    if kind.path().is_some_and(|p| p.trim().is_empty()) {
        diags.push(map.error_at(
            &format!("{key}.path"),
            "`path` must not be empty".to_string(),
        ));
        return None;
    }
    Some(kind)
}

fn transform_kind(
    t: &DeTable<'_>,
    span: Range<usize>,
    key: &str,
    custom: &[String],
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<TransformKind> {
    let ty = type_tag(t, key, TransformKind::TYPES, "transform", map, diags)?;
    let v = inner(t, span, &["type", "inputs"]);
    match ty.as_str() {
        "sql" => {
            let s: SqlTransform = deserialize(v, key, map, diags)?;
            if s.query.trim().is_empty() {
                diags.push(map.error_at(
                    &format!("{key}.query"),
                    "`query` must not be empty".to_string(),
                ));
                return None;
            }
            Some(TransformKind::Sql(s))
        }
        "protect" => {
            let p: crate::ProtectTransform = deserialize(v, key, map, diags)?;
            check_protect(&p, key, custom, map, diags).then_some(TransformKind::Protect(p))
        }
        "rewrap" => {
            let r: RewrapTransform = deserialize(v, key, map, diags)?;
            if r.columns.is_empty() {
                diags.push(map.error_at(
                    &format!("{key}.columns"),
                    "`columns` must name at least one column".to_string(),
                ));
                return None;
            }
            Some(TransformKind::Rewrap(r))
        }
        _ => {
            let v: ValidateTransform = deserialize(v, key, map, diags)?;
            let mut ok = true;
            for (i, r) in v.rules.iter().enumerate() {
                ok &= check_rule(r, &format!("{key}.rules[{i}]"), map, diags);
            }
            if v.rules.is_empty() {
                diags.push(map.error_at(
                    &format!("{key}.rules"),
                    "`rules` must hold at least one rule".to_string(),
                ));
                ok = false;
            }
            ok.then_some(TransformKind::Validate(v))
        }
    }
}

const FPE_FORMATS: &[&str] = &["digits", "alphanumeric", "card", "ssn"];
const PII_TYPES: &[&str] = &[
    "email",
    "phone",
    "ssn",
    "card",
    "iban",
    "ip",
    "date_of_birth",
    "person",
    "address",
];

fn check_protect(
    p: &crate::ProtectTransform,
    key: &str,
    custom: &[String],
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> bool {
    use crate::ColumnAction as A;
    let mut ok = true;
    let mut err = |k: String, m: String| {
        diags.push(map.error_at(&k, m));
        ok = false;
    };
    if p.columns.0.is_empty() {
        err(
            format!("{key}.columns"),
            "`columns` must name at least one column".into(),
        );
    }
    for (col, action) in &p.columns.0 {
        let k = format!("{key}.columns.{col}");
        match action {
            A::Fpe { format, .. } | A::FpeDecrypt { format, .. }
                if !FPE_FORMATS.contains(&format.as_str()) =>
            {
                err(
                    format!("{k}.format"),
                    format!(
                        "unknown FPE format \"{format}\"; expected one of {}",
                        FPE_FORMATS.join(", ")
                    ),
                );
            }
            A::Tokenize {
                length, encoding, ..
            } => {
                if let Some(l) = length
                    && !(8..=32).contains(l)
                {
                    err(format!("{k}.length"), "must be 8 to 32 bytes".into());
                }
                if let Some(e) = encoding
                    && e != "hex"
                    && e != "base64url"
                {
                    err(
                        format!("{k}.encoding"),
                        format!("unknown encoding \"{e}\"; expected hex or base64url"),
                    );
                }
            }
            A::Mask { char, pattern, .. } => {
                if let Some(c) = char
                    && c.chars().count() != 1
                {
                    err(format!("{k}.char"), "must be one character".into());
                }
                if pattern.as_deref() == Some("") {
                    err(format!("{k}.pattern"), "must not be empty".into());
                }
            }
            A::Redact {
                types,
                with,
                key: rk,
            } => {
                for (i, t) in types.iter().flatten().enumerate() {
                    if !PII_TYPES.contains(&t.as_str()) && !custom.contains(t) {
                        let mut m = format!(
                            "unknown PII type \"{t}\"; expected one of {}",
                            PII_TYPES.join(", ")
                        );
                        if let Some(d) = custos_core::did_you_mean(t, PII_TYPES.iter().copied()) {
                            m.push_str(&format!("; did you mean \"{d}\"?"));
                        }
                        err(format!("{k}.types[{i}]"), m);
                    }
                }
                match with.as_deref() {
                    None | Some("label") => {}
                    Some("token" | "encrypt") if rk.is_none() => err(
                        format!("{k}.key"),
                        format!(
                            "`with = \"{}\"` needs a `key`",
                            with.as_deref().unwrap_or("")
                        ),
                    ),
                    Some("token" | "encrypt") => {}
                    Some(w) => err(
                        format!("{k}.with"),
                        format!("unknown replacement \"{w}\"; expected label, token or encrypt"),
                    ),
                }
            }
            A::Generalize {
                to,
                bucket,
                zip_digits,
            } => {
                let set = [to.is_some(), bucket.is_some(), zip_digits.is_some()]
                    .iter()
                    .filter(|x| **x)
                    .count();
                if set != 1 {
                    err(
                        k.clone(),
                        "generalize needs exactly one of `to` (dates), `bucket` (numbers) or `zip_digits` (text)".into(),
                    );
                }
                if let Some(t) = to
                    && t != "month"
                    && t != "year"
                {
                    err(
                        format!("{k}.to"),
                        format!("unknown level \"{t}\"; expected month or year"),
                    );
                }
                if let Some(b) = bucket
                    && !(*b > 0.0 && b.is_finite())
                {
                    err(format!("{k}.bucket"), "must be a positive number".into());
                }
            }
            A::DateShift { max_days, .. } if *max_days == 0 => {
                err(format!("{k}.max_days"), "must be at least 1".into());
            }
            _ => {}
        }
    }
    ok
}

fn check_rule(r: &Rule, key: &str, map: &SourceMap, diags: &mut Diagnostics) -> bool {
    let mut ok = true;
    if let Some(re) = &r.regex
        && let Err(e) = regex::Regex::new(re)
    {
        let first = e
            .to_string()
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .to_string();
        diags.push(map.error_at(
            &format!("{key}.regex"),
            format!("invalid regular expression: {first}"),
        ));
        ok = false;
    }
    let checks = [
        r.not_null,
        r.unique,
        r.regex.is_some(),
        r.min.is_some(),
        r.max.is_some(),
        r.one_of.is_some(),
        r.min_length.is_some(),
        r.max_length.is_some(),
    ];
    if !checks.iter().any(|c| *c) {
        diags.push(map.error_at(
            key,
            "rule checks nothing: add not_null, unique, regex, min, max, one_of, min_length or max_length".to_string(),
        ));
        ok = false;
    }
    ok
}

/// A diagnostic at `key.suffix` (or at the component's table when the suffix is empty).
fn at_key(map: &SourceMap, key: &str, suffix: &str, msg: String) -> crate::Diagnostic {
    if suffix.is_empty() {
        map.error_at_key(key, msg)
    } else {
        map.error_at(&format!("{key}.{suffix}"), msg)
    }
}

fn sink_kind(
    t: &DeTable<'_>,
    span: Range<usize>,
    key: &str,
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<SinkKind> {
    let ty = type_tag(t, key, SinkKind::TYPES, "sink", map, diags)?;
    let v = inner(t, span, &["type", "inputs"]);
    let kind = match ty.as_str() {
        "csv" => {
            let c: CsvSink = deserialize(v, key, map, diags)?;
            if single_byte(&c.delimiter).is_none() {
                diags.push(map.error_at(
                    &format!("{key}.delimiter"),
                    "`delimiter` must be a single ASCII character".to_string(),
                ));
                return None;
            }
            SinkKind::Csv(c)
        }
        "jsonl" => SinkKind::Jsonl(deserialize(v, key, map, diags)?),
        "postgres" => {
            let p: crate::PostgresSink = deserialize(v, key, map, diags)?;
            let problems = crate::postgres::check_sink(&p);
            for (k, m) in &problems {
                diags.push(at_key(map, key, k, m.clone()));
            }
            return problems.is_empty().then(|| SinkKind::Postgres(Box::new(p)));
        }
        _ => {
            let p: ParquetSink = deserialize(v, key, map, diags)?;
            if let Err(e) = Compression::parse(&p.compression) {
                diags.push(map.error_at(&format!("{key}.compression"), e));
                return None;
            }
            if p.row_group_size == 0 {
                diags.push(map.error_at(
                    &format!("{key}.row_group_size"),
                    "must be at least 1".to_string(),
                ));
                return None;
            }
            SinkKind::Parquet(p)
        }
    };
    let path = kind.path().unwrap_or_default();
    if path.trim().is_empty() || path.ends_with('/') || path.contains(['*', '?', '[']) {
        diags.push(map.error_at(
            &format!("{key}.path"),
            "a sink `path` must name one file (no glob, not a directory)".to_string(),
        ));
        return None;
    }
    Some(kind)
}
