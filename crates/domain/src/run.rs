//! Runs: their lifecycle states and the configuration a user submits.
//!
//! A run trains one adapter method on one dataset over one base model at a given
//! *budget*: the target average rank per adapted module, so every method is compared
//! at the same total number of live rank-1 components (b = budget * K).

use serde::{Deserialize, Serialize};

/// Lifecycle of a run: queued -> running -> succeeded | failed | cancelled;
/// running -> queued when a lease expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [RunStatus::Queued, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The five adapter methods (ordered as [`Method::ALL`]: LoRA, the baseline, first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Lora,
    AdaLora,
    SalientLora,
    ALora,
    RoLora,
}

impl Method {
    pub const ALL: [Method; 5] = [Method::Lora, Method::AdaLora, Method::SalientLora, Method::ALora, Method::RoLora];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Lora => "lora",
            Method::AdaLora => "adalora",
            Method::SalientLora => "salientlora",
            Method::ALora => "alora",
            Method::RoLora => "rolora",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Method::Lora => "LoRA",
            Method::AdaLora => "AdaLoRA",
            Method::SalientLora => "SalientLoRA",
            Method::ALora => "ALoRA",
            Method::RoLora => "RoLoRA",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration value a person got wrong, with the field named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_string(), message: message.into() }
}

/// Optimisation settings shared by every method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Passes over the training split (fractional allowed); ignored when `max_steps` is set.
    pub epochs: f64,
    pub max_steps: Option<u64>,
    pub batch_size: u32,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Fraction of the total steps used for linear warm-up.
    pub warmup_ratio: f64,
    pub max_seq_len: u32,
    /// Global gradient-norm clip; 0 disables.
    pub grad_clip: f64,
    /// Evaluate on the validation split every N steps (0: only at the end).
    pub eval_every: u64,
    /// Write a resumable checkpoint every N steps (0: never).
    pub checkpoint_every: u64,
    /// Module names to adapt (BERT: query, key, value, attention.output.dense,
    /// intermediate.dense, output.dense; Llama: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj).
    pub target_modules: Vec<String>,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// Train the pooler along with the classifier head.
    pub train_pooler: bool,
    /// Decoder runs: answer generation for the ROUGE evaluation.
    pub generation: crate::generation::GenerationConfig,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 3.0,
            max_steps: None,
            batch_size: 32,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            warmup_ratio: 0.06,
            max_seq_len: 128,
            grad_clip: 1.0,
            eval_every: 0,
            checkpoint_every: 50,
            target_modules: vec!["query".into(), "value".into()],
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            train_pooler: true,
            generation: Default::default(),
        }
    }
}

impl TrainingConfig {
    /// Optimisation steps of a run over `n_train` training examples: `max_steps`, else
    /// `ceil(epochs × batches per epoch)` (the last batch of an epoch may be short).
    pub fn total_steps(&self, n_train: usize) -> u64 {
        let per_epoch = self.steps_per_epoch(n_train);
        self.max_steps.unwrap_or_else(|| ((self.epochs * per_epoch as f64).ceil() as u64).max(1))
    }

    /// Optimisation steps in one pass over `n_train` examples.
    pub fn steps_per_epoch(&self, n_train: usize) -> u64 {
        n_train.div_ceil(self.batch_size as usize).max(1) as u64
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.epochs.is_finite() && self.epochs > 0.0 && self.epochs <= 1000.0) {
            return Err(bad("training.epochs", "must be in (0, 1000]"));
        }
        if let Some(s) = self.max_steps {
            if s == 0 || s > 10_000_000 {
                return Err(bad("training.max_steps", "must be in 1..=10000000"));
            }
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return Err(bad("training.batch_size", "must be in 1..=4096"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(bad("training.learning_rate", "must be in (0, 1]"));
        }
        if !(self.weight_decay.is_finite() && (0.0..=1.0).contains(&self.weight_decay)) {
            return Err(bad("training.weight_decay", "must be in [0, 1]"));
        }
        if !(self.warmup_ratio.is_finite() && (0.0..1.0).contains(&self.warmup_ratio)) {
            return Err(bad("training.warmup_ratio", "must be in [0, 1)"));
        }
        if self.max_seq_len < 8 || self.max_seq_len > 8192 {
            return Err(bad("training.max_seq_len", "must be in 8..=8192"));
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return Err(bad("training.grad_clip", "must be >= 0"));
        }
        if self.target_modules.is_empty() {
            return Err(bad("training.target_modules", "name at least one module to adapt"));
        }
        if let Some(m) = self.target_modules.iter().find(|m| m.trim().is_empty() || m.len() > 64) {
            return Err(bad("training.target_modules", format!("invalid module name {m:?}")));
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0 && self.lora_alpha <= 4096.0) {
            return Err(bad("training.lora_alpha", "must be in (0, 4096]"));
        }
        if !(self.lora_dropout.is_finite() && (0.0..1.0).contains(&self.lora_dropout)) {
            return Err(bad("training.lora_dropout", "must be in [0, 1)"));
        }
        self.generation.validate()
    }
}

/// AdaLoRA (METHODS.md section 2). Step fields left empty are derived from the run's
/// total steps T: t_init = 10% T, t_final = 20% T, delta_t = max(1, 1% T).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaLoraConfig {
    /// Initial rank per module; None means ceil(1.5 * budget) (the paper's 12 -> 8).
    pub init_r: Option<u32>,
    pub tinit: Option<u64>,
    pub tfinal: Option<u64>,
    pub delta_t: Option<u64>,
    pub beta1: f64,
    pub beta2: f64,
    pub orth_reg_weight: f64,
}

impl Default for AdaLoraConfig {
    fn default() -> Self {
        Self { init_r: None, tinit: None, tfinal: None, delta_t: None, beta1: 0.85, beta2: 0.85, orth_reg_weight: 0.5 }
    }
}

/// SalientLoRA (METHODS.md section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SalientLoraConfig {
    /// Initial rank per module; None means the paper's recipe, r_init 15 for a target
    /// average of 2 (seed 000, section 4): ceil(7.5 * budget), at most 256.
    pub init_r: Option<u32>,
    /// Warm-up steps n_i; None means 10% of the total steps.
    pub n_i: Option<u64>,
    /// Allocation steps n_f; None means 60% of the total steps.
    pub n_f: Option<u64>,
    pub window_initial: u64,
    pub window_final: u64,
    /// Pearson threshold beta for an influence edge.
    pub beta: f64,
    /// Slope threshold gamma for an influence edge.
    pub gamma: f64,
    /// Mix of magnitude vs influence in the salience score.
    pub lambda: f64,
    pub orth_reg_weight: f64,
}

impl Default for SalientLoraConfig {
    fn default() -> Self {
        Self {
            init_r: None,
            n_i: None,
            n_f: None,
            window_initial: 10,
            window_final: 200,
            beta: 0.9,
            gamma: 2.0,
            lambda: 0.7,
            orth_reg_weight: 0.1,
        }
    }
}

/// ALoRA / AB-LoRA (METHODS.md section 4). The fixed scoring batch is `val_batch` examples
/// of the validation split (the training split when there is none), drawn with the run seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ALoraConfig {
    pub k1_epochs: f64,
    pub k2_epochs: f64,
    pub rounds: u32,
    /// Components pruned per round; None means the number of adapted module types.
    pub n_prune: Option<u32>,
    pub val_batch: u32,
}

impl Default for ALoraConfig {
    fn default() -> Self {
        Self { k1_epochs: 1.0, k2_epochs: 0.25, rounds: 8, n_prune: None, val_batch: 32 }
    }
}

impl ALoraConfig {
    /// The steps after which an ablation round runs: the first after `k1_epochs`, then one
    /// every `k2_epochs`, `rounds` of them at most, all before the run's last step.
    pub fn round_steps(&self, steps_per_epoch: u64, total_steps: u64) -> Vec<u64> {
        let first = ((self.k1_epochs * steps_per_epoch as f64).ceil() as u64).max(1);
        let every = ((self.k2_epochs * steps_per_epoch as f64).ceil() as u64).max(1);
        (0..u64::from(self.rounds)).map(|j| first + j * every).filter(|&s| s < total_steps).collect()
    }
}

/// RoLoRA (METHODS.md section 5). The run's steps are split into `iterations` equal
/// Frank-Wolfe iterations followed by a final fine-tuning phase of `final_ratio` of the
/// steps at the last rank configuration (ours: the paper retrains each iteration in full).
/// Inside an iteration, SPARSIFY is AdaLoRA's cubic schedule with `tinit_ratio` warm-up,
/// masking every `delta_t` steps and `tfinal_ratio` frozen steps (fractions of the iteration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoLoraConfig {
    /// Frank-Wolfe iterations T.
    pub iterations: u32,
    /// Average rank the first SPARSIFY keeps, as a fraction of the budget R (paper: R/2);
    /// iteration t+1 keeps (1 + 1/(T + t)) times more on average than iteration t.
    pub first_keep: f64,
    pub tinit_ratio: f64,
    pub tfinal_ratio: f64,
    /// Masking interval inside SPARSIFY; None: max(1, 1% of an iteration).
    pub delta_t: Option<u64>,
    /// Fraction of all steps spent fine-tuning after the last EXTEND.
    pub final_ratio: f64,
    /// Steps per Frank-Wolfe iteration (its SPARSIFY phase). None: the steps left by
    /// `final_ratio`, split evenly, which keeps RoLoRA's total compute equal to the other
    /// methods' (the paper retrains each iteration in full, T times the compute). The
    /// resolved value is in the run summary (`allocator.iteration_steps`).
    pub iteration_steps: Option<u64>,
    pub beta1: f64,
    pub beta2: f64,
    pub orth_reg_weight: f64,
}

impl Default for RoLoraConfig {
    fn default() -> Self {
        Self {
            iterations: 3,
            first_keep: 0.5,
            tinit_ratio: 0.1,
            tfinal_ratio: 0.2,
            delta_t: None,
            final_ratio: 0.2,
            iteration_steps: None,
            beta1: 0.85,
            beta2: 0.85,
            orth_reg_weight: 0.5,
        }
    }
}

/// Method-specific settings, tagged by `"method"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum MethodConfig {
    Lora,
    #[serde(rename = "adalora")]
    AdaLora(AdaLoraConfig),
    #[serde(rename = "salientlora")]
    SalientLora(SalientLoraConfig),
    #[serde(rename = "alora")]
    ALora(ALoraConfig),
    #[serde(rename = "rolora")]
    RoLora(RoLoraConfig),
}

impl MethodConfig {
    pub fn default_for(method: Method) -> Self {
        match method {
            Method::Lora => MethodConfig::Lora,
            Method::AdaLora => MethodConfig::AdaLora(AdaLoraConfig::default()),
            Method::SalientLora => MethodConfig::SalientLora(SalientLoraConfig::default()),
            Method::ALora => MethodConfig::ALora(ALoraConfig::default()),
            Method::RoLora => MethodConfig::RoLora(RoLoraConfig::default()),
        }
    }

    pub fn method(&self) -> Method {
        match self {
            MethodConfig::Lora => Method::Lora,
            MethodConfig::AdaLora(_) => Method::AdaLora,
            MethodConfig::SalientLora(_) => Method::SalientLora,
            MethodConfig::ALora(_) => Method::ALora,
            MethodConfig::RoLora(_) => Method::RoLora,
        }
    }

    /// Initial rank per module for a target average rank `budget`.
    pub fn init_rank(&self, budget: u32) -> u32 {
        match self {
            // AdaLoRA's paper starts at 1.5x the target (12 for 8, 6 for 4, 3 for 2).
            MethodConfig::AdaLora(c) => c.init_r.unwrap_or_else(|| (budget * 3).div_ceil(2)),
            // SalientLoRA's starts at 7.5x (15 for 2).
            MethodConfig::SalientLora(c) => c.init_r.unwrap_or_else(|| (budget * 15).div_ceil(2).min(256).max(budget)),
            MethodConfig::Lora | MethodConfig::ALora(_) | MethodConfig::RoLora(_) => budget,
        }
    }

    pub fn validate(&self, budget: u32) -> Result<(), ConfigError> {
        let unit = |field: &str, v: f64| {
            if v.is_finite() && (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(bad(field, "must be in [0, 1)"))
            }
        };
        let init = |field: &str, r: Option<u32>| match r {
            Some(r) if r < budget => Err(bad(field, format!("must be >= the budget ({budget})"))),
            Some(r) if r > 256 => Err(bad(field, "must be <= 256")),
            _ => Ok(()),
        };
        match self {
            MethodConfig::Lora => Ok(()),
            MethodConfig::AdaLora(c) => {
                init("method.init_r", c.init_r)?;
                unit("method.beta1", c.beta1)?;
                unit("method.beta2", c.beta2)?;
                if !(c.orth_reg_weight.is_finite() && c.orth_reg_weight >= 0.0) {
                    return Err(bad("method.orth_reg_weight", "must be >= 0"));
                }
                if c.delta_t == Some(0) {
                    return Err(bad("method.delta_t", "must be >= 1"));
                }
                Ok(())
            }
            MethodConfig::SalientLora(c) => {
                init("method.init_r", c.init_r)?;
                if c.n_f == Some(0) {
                    return Err(bad("method.n_f", "must be >= 1"));
                }
                if c.window_initial == 0 || c.window_final < c.window_initial {
                    return Err(bad("method.window_final", "need 1 <= window_initial <= window_final"));
                }
                if !(c.beta.is_finite() && (-1.0..=1.0).contains(&c.beta)) {
                    return Err(bad("method.beta", "must be in [-1, 1]"));
                }
                if !c.gamma.is_finite() {
                    return Err(bad("method.gamma", "must be finite"));
                }
                if !(c.lambda.is_finite() && (0.0..=1.0).contains(&c.lambda)) {
                    return Err(bad("method.lambda", "must be in [0, 1]"));
                }
                if !(c.orth_reg_weight.is_finite() && c.orth_reg_weight >= 0.0) {
                    return Err(bad("method.orth_reg_weight", "must be >= 0"));
                }
                Ok(())
            }
            MethodConfig::ALora(c) => {
                if !(c.k1_epochs.is_finite() && c.k1_epochs >= 0.0) {
                    return Err(bad("method.k1_epochs", "epochs must be >= 0"));
                }
                if !(c.k2_epochs.is_finite() && c.k2_epochs >= 0.0) {
                    return Err(bad("method.k2_epochs", "epochs must be >= 0"));
                }
                if c.rounds > 64 {
                    return Err(bad("method.rounds", "must be <= 64"));
                }
                if matches!(c.n_prune, Some(0)) {
                    return Err(bad("method.n_prune", "must be >= 1"));
                }
                if c.val_batch == 0 || c.val_batch > 1024 {
                    return Err(bad("method.val_batch", "must be in 1..=1024"));
                }
                Ok(())
            }
            MethodConfig::RoLora(c) => {
                if c.iterations == 0 || c.iterations > 16 {
                    return Err(bad("method.iterations", "must be in 1..=16"));
                }
                unit("method.beta1", c.beta1)?;
                unit("method.beta2", c.beta2)?;
                if !(c.first_keep.is_finite() && c.first_keep > 0.0 && c.first_keep <= 1.0) {
                    return Err(bad("method.first_keep", "must be in (0, 1]"));
                }
                unit("method.tinit_ratio", c.tinit_ratio)?;
                unit("method.tfinal_ratio", c.tfinal_ratio)?;
                if c.tinit_ratio + c.tfinal_ratio >= 1.0 {
                    return Err(bad("method.tfinal_ratio", "tinit_ratio + tfinal_ratio must be < 1"));
                }
                unit("method.final_ratio", c.final_ratio)?;
                if matches!(c.iteration_steps, Some(l) if l < 3) {
                    return Err(bad("method.iteration_steps", "must be >= 3"));
                }
                if c.delta_t == Some(0) {
                    return Err(bad("method.delta_t", "must be >= 1"));
                }
                if !(c.orth_reg_weight.is_finite() && c.orth_reg_weight >= 0.0) {
                    return Err(bad("method.orth_reg_weight", "must be >= 0"));
                }
                Ok(())
            }
        }
    }
}

/// Everything a run needs besides its dataset and base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub training: TrainingConfig,
    pub method: MethodConfig,
}

/// Largest target average rank a run may ask for.
pub const MAX_BUDGET: u32 = 128;

impl RunConfig {
    pub fn validate(&self, budget: u32) -> Result<(), ConfigError> {
        if budget == 0 || budget > MAX_BUDGET {
            return Err(bad("budget", format!("target average rank must be in 1..={MAX_BUDGET}")));
        }
        self.training.validate()?;
        self.method.validate(budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_config_round_trips_with_defaults() {
        let c: MethodConfig = serde_json::from_str(r#"{"method":"adalora","init_r":12}"#).unwrap();
        match &c {
            MethodConfig::AdaLora(a) => {
                assert_eq!(a.init_r, Some(12));
                assert_eq!(a.beta1, 0.85);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(c.init_rank(8), 12);
        let back: MethodConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(MethodConfig::default_for(Method::AdaLora).init_rank(8), 12);
        // SalientLoRA's paper recipe: r_init 15 for a target average of 2.
        assert_eq!(MethodConfig::default_for(Method::SalientLora).init_rank(2), 15);
        assert_eq!(MethodConfig::default_for(Method::SalientLora).init_rank(4), 30);
        assert_eq!(MethodConfig::default_for(Method::SalientLora).init_rank(64), 256);
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = RunConfig { training: TrainingConfig::default(), method: MethodConfig::Lora };
        assert_eq!(cfg.validate(100_000).unwrap_err().field, "budget");
        cfg.training.learning_rate = -1.0;
        assert_eq!(cfg.validate(8).unwrap_err().field, "training.learning_rate");
        cfg.training.learning_rate = 1e-3;
        cfg.method = MethodConfig::AdaLora(AdaLoraConfig { init_r: Some(4), ..Default::default() });
        assert_eq!(cfg.validate(8).unwrap_err().field, "method.init_r");
        assert!(serde_json::from_str::<RunConfig>(r#"{"method":{"method":"lora"},"bogus":1}"#).is_err());
        let field = |m: MethodConfig| RunConfig { training: TrainingConfig::default(), method: m }.validate(8).unwrap_err().field;
        assert_eq!(field(MethodConfig::SalientLora(SalientLoraConfig { lambda: 1.5, ..Default::default() })), "method.lambda");
        assert_eq!(field(MethodConfig::SalientLora(SalientLoraConfig { n_f: Some(0), ..Default::default() })), "method.n_f");
        assert_eq!(field(MethodConfig::SalientLora(SalientLoraConfig { window_final: 5, ..Default::default() })), "method.window_final");
        assert_eq!(field(MethodConfig::ALora(ALoraConfig { k2_epochs: -1.0, ..Default::default() })), "method.k2_epochs");
        assert_eq!(field(MethodConfig::ALora(ALoraConfig { n_prune: Some(0), ..Default::default() })), "method.n_prune");
        assert_eq!(field(MethodConfig::ALora(ALoraConfig { val_batch: 0, ..Default::default() })), "method.val_batch");
        assert_eq!(field(MethodConfig::RoLora(RoLoraConfig { first_keep: 0.0, ..Default::default() })), "method.first_keep");
        assert_eq!(
            field(MethodConfig::RoLora(RoLoraConfig { tinit_ratio: 0.5, tfinal_ratio: 0.5, ..Default::default() })),
            "method.tfinal_ratio"
        );
        assert_eq!(field(MethodConfig::RoLora(RoLoraConfig { final_ratio: 1.0, ..Default::default() })), "method.final_ratio");
        assert_eq!(field(MethodConfig::RoLora(RoLoraConfig { iterations: 0, ..Default::default() })), "method.iterations");
        assert_eq!(field(MethodConfig::RoLora(RoLoraConfig { iteration_steps: Some(2), ..Default::default() })), "method.iteration_steps");
        for m in Method::ALL {
            assert!(RunConfig { training: TrainingConfig::default(), method: MethodConfig::default_for(m) }.validate(8).is_ok(), "{m}");
        }
    }
}
