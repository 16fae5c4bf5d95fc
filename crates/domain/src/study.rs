//! Studies: a named grid of runs, datasets × methods × budgets × seeds, launched, extended
//! and compared as one thing.
//!
//! A *cell* is (dataset, method, base model, budget); the seeds are the replicates a cell's
//! mean, spread and interval are computed over. The spec is validated here (shape, names,
//! sizes); each grid point is then validated by the same code as a single run, so a
//! study gets exactly the field errors a run would.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::run::{ConfigError, Method, MAX_BUDGET};

/// Most runs one study may queue.
pub const MAX_STUDY_RUNS: usize = 2000;
/// Most seeds per cell.
pub const MAX_SEEDS: usize = 50;

/// Seeds of a study: a count `n` (seeds 1..=n) or an explicit list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Seeds {
    Count(u32),
    List(Vec<u64>),
}

impl Seeds {
    pub fn values(&self) -> Vec<u64> {
        match self {
            Seeds::Count(n) => (1..=u64::from(*n)).collect(),
            Seeds::List(v) => v.clone(),
        }
    }
}

impl Default for Seeds {
    fn default() -> Self {
        Seeds::Count(3)
    }
}

/// What a user submits to create a study (`POST /api/v1/studies`, or an experiment file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    pub name: String,
    pub dataset_ids: Vec<Uuid>,
    /// Method ids (`lora`, `adalora`, `salientlora`, `alora`, `rolora`).
    pub methods: Vec<String>,
    /// Target average ranks; every method runs at every budget.
    pub budgets: Vec<u32>,
    #[serde(default)]
    pub seeds: Seeds,
    /// One base model for every dataset; by default each dataset gets the first model that
    /// serves its task family (MiniLM for classification/regression, SmolLM2 for generation).
    #[serde(default)]
    pub base_model: Option<String>,
    /// `training` overrides shared by every run (same fields as a run's `training`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub training: Option<serde_json::Value>,
    /// Per-method `method_config` overrides, keyed by method id.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub method_config: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub priority: i32,
}

/// More grid points for an existing study: new budgets and/or more seeds (and, optionally,
/// more methods or datasets). Points that already have a run are not rerun.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StudyExtension {
    #[serde(default)]
    pub budgets: Vec<u32>,
    /// A count raises the seed count to n (seeds 1..=n); a list adds those seeds.
    #[serde(default)]
    pub seeds: Option<Seeds>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub dataset_ids: Vec<Uuid>,
}

/// One run of the grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridPoint {
    pub dataset_id: Uuid,
    pub method: Method,
    pub budget: u32,
    pub seed: u64,
}

fn bad(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_string(), message: message.into() }
}

fn no_repeats<T: PartialEq + std::fmt::Debug>(field: &str, v: &[T]) -> Result<(), ConfigError> {
    for (i, x) in v.iter().enumerate() {
        if v[..i].contains(x) {
            return Err(bad(field, format!("{x:?} is listed twice")));
        }
    }
    Ok(())
}

impl StudySpec {
    /// The methods, parsed, in the order given.
    pub fn parsed_methods(&self) -> Result<Vec<Method>, ConfigError> {
        self.methods
            .iter()
            .map(|m| {
                Method::parse(m)
                    .ok_or_else(|| bad("methods", format!("unknown method {m:?}; use some of lora, adalora, salientlora, alora, rolora")))
            })
            .collect()
    }

    /// Checks the grid's shape (not the per-run configs: those are checked per grid point).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(bad("name", "give the study a name of 1 to 200 characters"));
        }
        if self.dataset_ids.is_empty() {
            return Err(bad("dataset_ids", "name at least one dataset"));
        }
        no_repeats("dataset_ids", &self.dataset_ids)?;
        if self.methods.is_empty() {
            return Err(bad("methods", "name at least one method"));
        }
        let methods = self.parsed_methods()?;
        no_repeats("methods", &methods)?;
        if self.budgets.is_empty() {
            return Err(bad("budgets", "name at least one budget (target average rank)"));
        }
        if let Some(b) = self.budgets.iter().find(|b| **b == 0 || **b > MAX_BUDGET) {
            return Err(bad("budgets", format!("budget {b} is outside 1..={MAX_BUDGET}")));
        }
        no_repeats("budgets", &self.budgets)?;
        let seeds = self.seeds.values();
        if seeds.is_empty() || seeds.len() > MAX_SEEDS {
            return Err(bad("seeds", format!("use 1 to {MAX_SEEDS} seeds")));
        }
        no_repeats("seeds", &seeds)?;
        if let Some(m) = self.method_config.keys().find(|m| Method::parse(m).is_none_or(|p| !methods.contains(&p))) {
            return Err(bad("method_config", format!("{m:?} is not one of the study's methods")));
        }
        if !(-1000..=1000).contains(&self.priority) {
            return Err(bad("priority", "must be in -1000..=1000"));
        }
        let n = self.grid_size();
        if n > MAX_STUDY_RUNS {
            return Err(bad("seeds", format!("the grid has {n} runs; a study may have at most {MAX_STUDY_RUNS}")));
        }
        Ok(())
    }

    pub fn grid_size(&self) -> usize {
        self.dataset_ids.len() * self.methods.len() * self.budgets.len() * self.seeds.values().len()
    }

    /// Every grid point, dataset-major then method, budget, seed.
    pub fn grid(&self) -> Result<Vec<GridPoint>, ConfigError> {
        let methods = self.parsed_methods()?;
        let seeds = self.seeds.values();
        let mut out = Vec::with_capacity(self.grid_size());
        for &dataset_id in &self.dataset_ids {
            for &method in &methods {
                for &budget in &self.budgets {
                    for &seed in &seeds {
                        out.push(GridPoint { dataset_id, method, budget, seed });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The spec with `ext`'s budgets, seeds, methods and datasets added.
    pub fn extended(&self, ext: &StudyExtension) -> StudySpec {
        let mut s = self.clone();
        add(&mut s.budgets, &ext.budgets);
        add(&mut s.dataset_ids, &ext.dataset_ids);
        add(&mut s.methods, &ext.methods);
        s.seeds = match (&self.seeds, &ext.seeds) {
            (old, None) => old.clone(),
            (Seeds::Count(a), Some(Seeds::Count(b))) => Seeds::Count((*a).max(*b)),
            (old, Some(new)) => {
                let mut v = old.values();
                add(&mut v, &new.values());
                Seeds::List(v)
            }
        };
        s
    }
}

/// Appends the items of `from` that `into` lacks, in order.
fn add<T: PartialEq + Clone>(into: &mut Vec<T>, from: &[T]) {
    for x in from {
        if !into.contains(x) {
            into.push(x.clone());
        }
    }
}

impl StudyExtension {
    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty() && self.seeds.is_none() && self.methods.is_empty() && self.dataset_ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StudySpec {
        StudySpec {
            name: "s".into(),
            dataset_ids: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
            methods: vec!["lora".into(), "adalora".into()],
            budgets: vec![2, 8],
            seeds: Seeds::Count(3),
            base_model: None,
            training: None,
            method_config: BTreeMap::new(),
            priority: 0,
        }
    }

    #[test]
    fn grid_is_the_full_product() {
        let s = spec();
        s.validate().unwrap();
        let g = s.grid().unwrap();
        assert_eq!(g.len(), 2 * 2 * 2 * 3);
        assert_eq!(g[0], GridPoint { dataset_id: Uuid::from_u128(1), method: Method::Lora, budget: 2, seed: 1 });
        assert_eq!(g.last().unwrap(), &GridPoint { dataset_id: Uuid::from_u128(2), method: Method::AdaLora, budget: 8, seed: 3 });
    }

    #[test]
    fn bad_specs_name_the_field() {
        let field = |f: fn(&mut StudySpec)| {
            let mut s = spec();
            f(&mut s);
            s.validate().unwrap_err().field
        };
        assert_eq!(field(|s| s.methods = vec!["lora".into(), "dora".into()]), "methods");
        assert_eq!(field(|s| s.methods = vec!["lora".into(), "lora".into()]), "methods");
        assert_eq!(field(|s| s.budgets = vec![]), "budgets");
        assert_eq!(field(|s| s.budgets = vec![0]), "budgets");
        assert_eq!(field(|s| s.seeds = Seeds::List(vec![1, 1])), "seeds");
        assert_eq!(field(|s| s.seeds = Seeds::Count(0)), "seeds");
        assert_eq!(field(|s| s.dataset_ids = vec![]), "dataset_ids");
        assert_eq!(field(|s| s.name = " ".into()), "name");
        assert_eq!(
            field(|s| {
                s.method_config.insert("rolora".into(), serde_json::json!({}));
            }),
            "method_config"
        );
        // 2 datasets x 2 methods x 11 budgets x 50 seeds = 2200 runs: too many.
        assert_eq!(
            field(|s| {
                s.budgets = (1..=11).collect();
                s.seeds = Seeds::Count(50);
            }),
            "seeds"
        );
    }

    #[test]
    fn extension_adds_points_without_repeating() {
        let s = spec();
        let e = StudyExtension { budgets: vec![8, 16], seeds: Some(Seeds::Count(5)), ..Default::default() };
        let x = s.extended(&e);
        assert_eq!(x.budgets, vec![2, 8, 16]);
        assert_eq!(x.seeds.values(), vec![1, 2, 3, 4, 5]);
        let old = s.grid().unwrap();
        let new = x.grid().unwrap();
        assert_eq!(new.len(), 2 * 2 * 3 * 5);
        assert!(old.iter().all(|p| new.contains(p)));
        let listed = s.extended(&StudyExtension { seeds: Some(Seeds::List(vec![3, 7])), ..Default::default() });
        assert_eq!(listed.seeds.values(), vec![1, 2, 3, 7]);
    }
}
