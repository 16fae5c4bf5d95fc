//! Experiment files: a study as TOML, kept in a user's repository and submitted with
//! `rankfit studies create FILE.toml`.
//!
//! ```toml
//! name = "sst2 budgets"
//! datasets = ["sst2", "multiemo-200"]   # names (yours, then public) or ids
//! methods = ["lora", "adalora"]
//! budgets = [2, 4]
//! seeds = 3                              # seeds 1..=3, or a list: [11, 12]
//! base_model = "all-minilm-l6-v2"        # optional: by default per task family
//! priority = 0                           # optional
//!
//! [training]                             # optional: any run `training` field
//! max_steps = 200
//! batch_size = 16
//!
//! [method_config.adalora]                # optional: per-method settings
//! init_r = 12
//! ```
//!
//! The file is checked before anything is created: TOML syntax, unknown keys and types,
//! then the same field checks as `POST /studies`; every error names the file's line. The
//! server checks each grid point's run config again and creates the study's runs all or
//! nothing; a field error it reports is located in the file the same way.

use std::collections::BTreeMap;
use std::ops::Range;

use rankfit_domain::study::{Seeds, StudySpec};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use uuid::Uuid;

/// The file's schema (`deny_unknown_fields`: a misspelt key is an error, not a default).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    /// Dataset names or ids.
    pub datasets: Vec<String>,
    pub methods: Vec<String>,
    pub budgets: Vec<u32>,
    #[serde(default)]
    pub seeds: Seeds,
    #[serde(default)]
    pub base_model: Option<String>,
    #[serde(default)]
    pub training: Option<toml::Table>,
    #[serde(default)]
    pub method_config: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub priority: i32,
}

/// An error located in the file (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl FileError {
    /// `path:line:column: message`, then the line itself.
    pub fn render(&self, path: &str, text: &str) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => {
                let src = text.lines().nth(l - 1).unwrap_or_default();
                format!("{path}:{l}:{c}: {}\n  {l} | {src}", self.message)
            }
            _ => format!("{path}: {}", self.message),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn at(text: &str, span: Option<Range<usize>>, message: String) -> FileError {
    match span {
        Some(s) => {
            let (line, column) = line_col(text, s.start);
            FileError { line: Some(line), column: Some(column), message }
        }
        None => FileError { line: None, column: None, message },
    }
}

/// Parses and type-checks the file.
pub fn parse(text: &str) -> Result<Experiment, FileError> {
    toml::from_str(text).map_err(|e| at(text, e.span(), e.message().trim().to_string()))
}

impl Experiment {
    /// The study as the API takes it, with the datasets resolved to ids (in file order).
    pub fn to_spec(&self, dataset_ids: Vec<Uuid>) -> StudySpec {
        let json = |t: &toml::Table| serde_json::to_value(t).unwrap_or_default();
        StudySpec {
            name: self.name.clone(),
            dataset_ids,
            methods: self.methods.clone(),
            budgets: self.budgets.clone(),
            seeds: self.seeds.clone(),
            base_model: self.base_model.clone(),
            training: self.training.as_ref().map(json),
            method_config: self.method_config.iter().map(|(k, v)| (k.clone(), json(v))).collect(),
            priority: self.priority,
        }
    }
}

/// Checks the study's grid as the server does (after the datasets are resolved), located.
pub fn validate(text: &str, spec: &StudySpec) -> Result<(), FileError> {
    spec.validate().map_err(|e| locate(text, &e.field, format!("{}: {}", file_field(&e.field), e.message)))
}

/// The file's name for an API field: `dataset_ids` is `datasets` here, and a run's
/// `method.X` is `method_config.<method>.X`.
fn file_field(api_field: &str) -> String {
    match api_field {
        "dataset_ids" => "datasets".into(),
        f => match f.strip_prefix("method.") {
            Some(rest) => format!("method_config.<method>.{rest}"),
            None => f.into(),
        },
    }
}

/// An error about the API field `api_field` (as `POST /studies` names it), at the line of
/// that key in the file, else of its nearest enclosing key, else unlocated.
pub fn locate(text: &str, api_field: &str, message: String) -> FileError {
    let Ok(doc) = DeTable::parse(text) else {
        return FileError { line: None, column: None, message };
    };
    let root = doc.get_ref();
    let span = if api_field == "dataset_ids" {
        key_span(root, &["datasets"])
    } else if let Some(rest) = api_field.strip_prefix("method.") {
        // The run-level name does not say which method: the first table that sets the key.
        let methods = find(root, "method_config").and_then(|v| match v {
            DeValue::Table(t) => Some(t),
            _ => None,
        });
        methods
            .and_then(|t| t.iter().find_map(|(_, v)| if let DeValue::Table(m) = v.get_ref() { key_span(m, &[rest]) } else { None }))
            .or_else(|| key_span(root, &["method_config"]))
    } else {
        let parts: Vec<&str> = api_field.split('.').collect();
        (1..=parts.len()).rev().find_map(|n| key_span(root, &parts[..n]))
    };
    at(text, span, message)
}

fn find<'a>(t: &'a DeTable<'_>, key: &str) -> Option<&'a DeValue<'a>> {
    t.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v.get_ref())
}

/// The span of the key at `path` (table by table).
fn key_span(t: &DeTable<'_>, path: &[&str]) -> Option<Range<usize>> {
    let (first, rest) = path.split_first()?;
    let (k, v) = t.iter().find(|(k, _)| k.get_ref().as_ref() == *first)?;
    if rest.is_empty() {
        return Some(k.span());
    }
    match v.get_ref() {
        DeValue::Table(inner) => key_span(inner, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"# a comparison
name = "budgets"
datasets = ["sst2"]
methods = ["lora", "adalora"]
budgets = [2, 4]
seeds = [11, 12]

[training]
max_steps = 20
learning_rate = 0.003

[method_config.adalora]
init_r = 6
"#;

    #[test]
    fn a_file_becomes_the_api_spec() {
        let e = parse(GOOD).unwrap();
        let id = Uuid::new_v4();
        let spec = e.to_spec(vec![id]);
        assert_eq!(spec.dataset_ids, vec![id]);
        assert_eq!(spec.seeds.values(), vec![11, 12]);
        assert_eq!(spec.training.as_ref().unwrap()["max_steps"], 20);
        assert_eq!(spec.training.as_ref().unwrap()["learning_rate"], 0.003);
        assert_eq!(spec.method_config["adalora"]["init_r"], 6);
        validate(GOOD, &spec).unwrap();
        // Seeds default as in the API.
        let e = parse("name='x'\ndatasets=['a']\nmethods=['lora']\nbudgets=[1]\n").unwrap();
        assert_eq!(e.seeds.values(), vec![1, 2, 3]);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../../../../examples/study.toml");
        let spec = parse(text).unwrap().to_spec(vec![Uuid::new_v4()]);
        validate(text, &spec).unwrap();
        assert_eq!(spec.methods, ["lora", "adalora"]);
    }

    #[test]
    fn syntax_unknown_keys_and_types_are_located() {
        let err = parse("name = \"x\"\ndatasets = [\"a\"\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err:?}");
        let err = parse(&GOOD.replace("budgets = [2, 4]", "budget = [2, 4]")).unwrap_err();
        assert_eq!(err.line, Some(5), "{err:?}");
        assert!(err.message.contains("budget"), "{err:?}");
        let err = parse(&GOOD.replace("budgets = [2, 4]", "budgets = [2, \"four\"]")).unwrap_err();
        assert_eq!(err.line, Some(5), "{err:?}");
    }

    #[test]
    fn field_errors_land_on_their_key() {
        let bad = GOOD.replace("budgets = [2, 4]", "budgets = [2, 0]");
        let spec = parse(&bad).unwrap().to_spec(vec![Uuid::new_v4()]);
        let err = validate(&bad, &spec).unwrap_err();
        assert_eq!((err.line, err.column), (Some(5), Some(1)), "{err:?}");
        assert!(err.message.starts_with("budgets: budget 0 is outside"), "{err:?}");
        assert!(err.render("exp.toml", &bad).starts_with("exp.toml:5:1: budgets:"), "{}", err.render("exp.toml", &bad));

        let bad = GOOD.replace("[method_config.adalora]", "[method_config.alora]");
        let spec = parse(&bad).unwrap().to_spec(vec![Uuid::new_v4()]);
        assert_eq!(validate(&bad, &spec).unwrap_err().line, Some(12));

        // Fields the server reports for a grid point's run config.
        assert_eq!(locate(GOOD, "training.learning_rate", "m".into()).line, Some(10));
        assert_eq!(locate(GOOD, "training.warmup_ratio", "m".into()).line, Some(8), "the enclosing table");
        assert_eq!(locate(GOOD, "method.init_r", "m".into()).line, Some(13));
        assert_eq!(locate(GOOD, "dataset_ids", "m".into()).line, Some(3));
        assert_eq!(locate(GOOD, "nothing", "m".into()).line, None);
    }
}
