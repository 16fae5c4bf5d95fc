//! The sequence-classification head of `BertForSequenceClassification`: pooler (dense +
//! tanh over [CLS], initialised from the checkpoint) and a classifier `Linear`
//! (N(0, 0.02) weight, zero bias, as `_init_weights`). A regression head is the same
//! with one output.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rand::rngs::StdRng;

use super::bert::HeadParams;
use super::weights::HostTensor;
use crate::adapters::adalora::normal;
use crate::params::ParamStore;

/// `transformers`' `initializer_range` for BERT.
pub const INITIALIZER_RANGE: f64 = 0.02;

pub const POOLER_WEIGHT: &str = "bert.pooler.dense.weight";
pub const POOLER_BIAS: &str = "bert.pooler.dense.bias";
pub const CLASSIFIER_WEIGHT: &str = "classifier.weight";
pub const CLASSIFIER_BIAS: &str = "classifier.bias";

pub fn init_head<B: Backend>(
    store: &mut ParamStore<B>,
    pretrained_pooler: &(HostTensor, HostTensor),
    num_labels: usize,
    train_pooler: bool,
    rng: &mut StdRng,
    device: &B::Device,
) -> HeadParams {
    let (pw, pb) = pretrained_pooler;
    let h = pb.data.len();
    let pooler_w = store.push(POOLER_WEIGHT, pw.to_tensor(device), train_pooler, true);
    let pooler_b = store.push(POOLER_BIAS, HostTensor::new(vec![1, h], pb.data.clone()).to_tensor(device), train_pooler, false);
    let w: Vec<f32> = (0..num_labels * h).map(|_| normal(rng, INITIALIZER_RANGE)).collect();
    let classifier_w = store.push(CLASSIFIER_WEIGHT, HostTensor::new(vec![num_labels, h], w).to_tensor(device), true, true);
    let classifier_b = store.push(CLASSIFIER_BIAS, Tensor::zeros([1, num_labels], device), true, false);
    HeadParams { pooler_w, pooler_b, classifier_w, classifier_b }
}
