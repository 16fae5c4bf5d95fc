//! Activations as single autodiff ops with exact backward passes, where burn's composed
//! versions are imprecise or slow:
//!
//! - [`gelu`]: `x Φ(x)` with the exact (erf) normal CDF, and its exact derivative
//!   `Φ(x) + x φ(x)`, as in PyTorch's `nn.GELU()` (BERT's `hidden_act = "gelu"`). burn's own
//!   `gelu` computes the erf form forward but differentiates the tanh approximation in
//!   backward (`ActivationOps::gelu_backward`'s default, which the ndarray backend keeps): its
//!   gradients disagree with its forward, and so with PyTorch's, by up to ~1e-3 per element
//!   near |x| ≈ 2.
//! - [`softmax`]: saves only its output `p` and computes `p ⊙ (g − Σ p ⊙ g)` in backward, as
//!   PyTorch does. burn's softmax is `exp(x − max) / Σ exp(…)` differentiated op by op (the
//!   division's and the exponential's backward, each a pass, keeping `exp` and the sum alive),
//!   which loses digits: on attention-like rows its gradient is ~400x further from the f64
//!   one than this op's (`train_bench --ops`: 2.1e-4 vs 5.5e-7 of the largest entry), and
//!   where a head's gradient is a small difference of large terms the two disagree in the
//!   leading digits. Measured on MiniLM (`tests/trajectory.rs`):
//!   layer 0's head 2, whose query gradient is ~200x smaller than the other heads', gets a
//!   gradient 25% off PyTorch's through burn's softmax (PyTorch's own f32 and f64 agree) and
//!   4e-4 off through this one; after 40 Adam steps that head's LoRA weights were 4% apart.
//! - [`layer_norm`] (with γ and β frozen, on the CPU backend): one pass per row each way from
//!   the saved `x̂` and `1/σ`. burn's composed mean/sub/square/div/sqrt graph rounds its
//!   backward differently from PyTorch's fused kernel: with it, MiniLM's LoRA gradients
//!   stayed ~3e-4 (relative) off PyTorch's at every step; with this op they agree to ~4e-6
//!   and 40 steps end within 1e-5 of PEFT's weights.
//!
//! On the CPU backend both directions of each op are single passes over host memory
//! ([`host`]: each output element written once, in parallel chunks) instead of chains of
//! elementwise ops that each allocate an array.
//!
//! An op is registered through burn-autodiff's public `Backward` trait, which needs the
//! concrete `Autodiff<inner>` type; the model code is generic over any backend, so
//! [`dispatch`] picks the op by the backend's type at run time (the CPU backend, and CUDA's
//! when built with the `cuda` feature) and falls back to burn's own op elsewhere.

use std::any::{Any, TypeId};
use std::f64::consts::{FRAC_1_SQRT_2, PI};
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ActivationOps, FloatTensor, FloatTensorOps};
use burn::tensor::{Tensor, TensorPrimitive};
use burn_ndarray::NdArray;

/// GELU (erf form) with the exact derivative on every backend.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    dispatch(x, Gelu, |x| if B::ad_enabled(&x.device()) { gelu_from_ops(x) } else { burn::tensor::activation::gelu(x) })
}

/// The exact GELU from differentiable tensor ops (`erf`'s derivative is exact): the
/// fallback for autodiff backends without the fused op.
pub fn gelu_from_ops<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let cdf = (x.clone() * FRAC_1_SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5);
    x * cdf
}

/// Softmax along `dim` with PyTorch's backward.
pub fn softmax<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    dispatch(x, Softmax { dim }, |x| burn::tensor::activation::softmax(x, dim))
}

/// LayerNorm over the last dimension with biased variance (PyTorch semantics). On the CPU
/// backend, when γ and β are frozen (as in every method here: adapters train, norms do not),
/// one op: a single pass per row forward, saving `x̂` and `1/σ`, and
/// `dx = (γg − mean(γg) − x̂ · mean(γg ⊙ x̂)) / σ` in one pass per row backward; otherwise
/// burn's ops ([`layer_norm_from_ops`]).
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>, gamma: &Tensor<B, 1>, beta: &Tensor<B, 1>, eps: f64) -> Tensor<B, D> {
    if gamma.is_require_grad() || beta.is_require_grad() {
        return layer_norm_from_ops(x, gamma, beta, eps);
    }
    let op = || RowNorm { gamma: host_vector(gamma), beta: Some(host_vector(beta)), eps: eps as f32, centered: true };
    row_norm(x, op, |x| layer_norm_from_ops(x, gamma, beta, eps))
}

/// RMSNorm over the last dimension (transformers' `LlamaRMSNorm`: `w ⊙ x / √(mean(x²) + ε)`).
/// On the CPU backend with `w` frozen, one op like [`layer_norm`]: `x̂ = x / rms` and
/// `1/rms` saved, `dx = (wg − x̂ · mean(wg ⊙ x̂)) / rms` in one pass per row; otherwise
/// burn's ops ([`rms_norm_from_ops`]).
pub fn rms_norm<B: Backend, const D: usize>(x: Tensor<B, D>, weight: &Tensor<B, 1>, eps: f64) -> Tensor<B, D> {
    if weight.is_require_grad() {
        return rms_norm_from_ops(x, weight, eps);
    }
    let op = || RowNorm { gamma: host_vector(weight), beta: None, eps: eps as f32, centered: false };
    row_norm(x, op, |x| rms_norm_from_ops(x, weight, eps))
}

/// RMSNorm from burn's tensor ops.
pub fn rms_norm_from_ops<B: Backend, const D: usize>(x: Tensor<B, D>, weight: &Tensor<B, 1>, eps: f64) -> Tensor<B, D> {
    let last = D - 1;
    let var = x.clone().square().mean_dim(last);
    let normed = x / (var + eps).sqrt();
    let mut shape = [1usize; D];
    shape[last] = weight.dims()[0];
    normed * weight.clone().reshape(shape)
}

fn host_vector<B: Backend>(t: &Tensor<B, 1>) -> Arc<[f32]> {
    t.to_data().convert::<f32>().to_vec::<f32>().expect("f32 data").into()
}

/// Whether `B` is the CPU backend (with or without autodiff), whose ops here have host kernels.
fn is_cpu<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Autodiff<NdArray<f32>>>() || TypeId::of::<B>() == TypeId::of::<NdArray<f32>>()
}

/// A frozen row norm on the CPU backend's f32 tensors (with or without autodiff), `fallback`
/// on anything else.
fn row_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    op: impl FnOnce() -> RowNorm,
    fallback: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    let on_cpu = is_cpu::<B>();
    if !on_cpu {
        return fallback(x);
    }
    let primitive: Box<dyn Any> = Box::new(x.into_primitive().tensor());
    let primitive = match primitive.downcast::<FloatTensor<Autodiff<NdArray<f32>>>>() {
        Ok(x) if host::is_f32(&x.primitive) => return backend_tensor(Box::new(op().tracked(*x))),
        Ok(x) => x as Box<dyn Any>,
        Err(p) => p,
    };
    let primitive = match primitive.downcast::<FloatTensor<NdArray<f32>>>() {
        Ok(x) if host::is_f32(&x) => return backend_tensor(Box::new(op().rows(&x).0)),
        Ok(x) => x as Box<dyn Any>,
        Err(p) => p,
    };
    fallback(backend_tensor(primitive))
}

/// The negative log-likelihood of `targets` (one class index per row) under
/// `softmax(logits)`, per row: `logsumexp(x) − x[target]`, i.e. `−log_softmax(x)[target]`.
/// On the CPU backend one op: one pass per row forward (max, Σ exp, the target's logit),
/// saving the logits and each row's log-sum-exp; one pass backward writing
/// `g · (softmax(x) − onehot(target))`. burn's `log_softmax` + `gather` made ~6 passes each
/// way over the logits, which for a decoder's vocabulary (`[tokens, 49152]`: 805 MB at 4,096
/// tokens) each allocate and fill an array that size. Elsewhere burn's ops.
pub fn cross_entropy_rows<B: Backend>(logits: Tensor<B, 2>, targets: &[i64]) -> Tensor<B, 1> {
    let [n, classes] = logits.dims();
    assert_eq!(n, targets.len(), "one target per row");
    assert!(targets.iter().all(|&t| t >= 0 && (t as usize) < classes), "a target outside 0..{classes}");
    let on_cpu = is_cpu::<B>();
    if on_cpu {
        let targets: Arc<[i64]> = targets.into();
        let primitive: Box<dyn Any> = Box::new(logits.into_primitive().tensor());
        let primitive = match primitive.downcast::<FloatTensor<Autodiff<NdArray<f32>>>>() {
            Ok(x) if host::is_f32(&x.primitive) => return backend_tensor(Box::new(cross_entropy_tracked(*x, targets))),
            Ok(x) => x as Box<dyn Any>,
            Err(p) => p,
        };
        let primitive = match primitive.downcast::<FloatTensor<NdArray<f32>>>() {
            Ok(x) if host::is_f32(&x) => return backend_tensor(Box::new(host::cross_entropy_rows(&x, &targets).0)),
            Ok(x) => x as Box<dyn Any>,
            Err(p) => p,
        };
        return cross_entropy_from_ops(backend_tensor(primitive), &targets);
    }
    cross_entropy_from_ops(logits, targets)
}

/// [`cross_entropy_rows`] from burn's ops.
pub fn cross_entropy_from_ops<B: Backend>(logits: Tensor<B, 2>, targets: &[i64]) -> Tensor<B, 1> {
    let n = targets.len();
    let t = Tensor::<B, 2, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(targets.to_vec(), [n, 1]), &logits.device());
    burn::tensor::activation::log_softmax(logits, 1).gather(1, t).reshape([n]).neg()
}

/// SwiGLU's product `silu(gate) ⊙ up` (Llama's MLP). On the CPU backend one op: one pass
/// forward, and one pass backward giving both gradients,
/// `∂gate = g ⊙ up ⊙ σ(gate)(1 + gate(1 − σ(gate)))`, `∂up = g ⊙ silu(gate)`; elsewhere
/// burn's ops.
pub fn silu_mul<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    let on_cpu = is_cpu::<B>();
    if !on_cpu || gate.dims() != up.dims() {
        return burn::tensor::activation::silu(gate) * up;
    }
    let pair: Box<dyn Any> = Box::new((gate.into_primitive().tensor(), up.into_primitive().tensor()));
    let pair = match pair.downcast::<(FloatTensor<Autodiff<NdArray<f32>>>, FloatTensor<Autodiff<NdArray<f32>>>)>() {
        Ok(p) if host::is_f32(&p.0.primitive) && host::is_f32(&p.1.primitive) => {
            return backend_tensor(Box::new(silu_mul_tracked(p.0, p.1)))
        }
        Ok(p) => p as Box<dyn Any>,
        Err(p) => p,
    };
    let pair = match pair.downcast::<(FloatTensor<NdArray<f32>>, FloatTensor<NdArray<f32>>)>() {
        Ok(p) if host::is_f32(&p.0) && host::is_f32(&p.1) => return backend_tensor(Box::new(host::zip(&p.0, &p.1, host::silu_mul))),
        Ok(p) => p as Box<dyn Any>,
        Err(p) => p,
    };
    match pair.downcast::<(FloatTensor<B>, FloatTensor<B>)>() {
        Ok(p) => {
            let (gate, up) = *p;
            burn::tensor::activation::silu(Tensor::<B, D>::from_primitive(TensorPrimitive::Float(gate)))
                * Tensor::<B, D>::from_primitive(TensorPrimitive::Float(up))
        }
        Err(_) => unreachable!("the pair holds B's float tensors"),
    }
}

/// LayerNorm from burn's tensor ops.
pub fn layer_norm_from_ops<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: &Tensor<B, 1>,
    beta: &Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let last = D - 1;
    let mean = x.clone().mean_dim(last);
    let centered = x - mean;
    let var = centered.clone().square().mean_dim(last);
    let normed = centered / (var + eps).sqrt();
    let h = gamma.dims()[0];
    let mut shape = [1usize; D];
    shape[last] = h;
    normed * gamma.clone().reshape(shape) + beta.clone().reshape(shape)
}

/// An elementwise-or-row op with its own forward and backward on an inner backend.
trait FusedOp: Copy {
    fn forward<I: Kernels>(self, x: FloatTensor<I>) -> FloatTensor<I>;
    fn tracked<I: Kernels, C: CheckpointStrategy>(self, x: FloatTensor<Autodiff<I, C>>) -> FloatTensor<Autodiff<I, C>>;
}

/// `op` on `x` when `B` is one of the backends with kernels (autodiff or not), `fallback`
/// otherwise.
fn dispatch<B: Backend, const D: usize, O: FusedOp>(
    x: Tensor<B, D>,
    op: O,
    fallback: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    let primitive: Box<dyn Any> = Box::new(x.into_primitive().tensor());
    // Training: the op with its backward.
    let primitive = match primitive.downcast::<FloatTensor<Autodiff<NdArray<f32>>>>() {
        Ok(x) => return backend_tensor(Box::new(op.tracked::<NdArray<f32>, NoCheckpointing>(*x))),
        Err(p) => p,
    };
    #[cfg(feature = "cuda")]
    let primitive = match primitive.downcast::<FloatTensor<Autodiff<burn::backend::Cuda<f32>>>>() {
        Ok(x) => return backend_tensor(Box::new(op.tracked::<burn::backend::Cuda<f32>, NoCheckpointing>(*x))),
        Err(p) => p,
    };
    // Evaluation on the CPU backend: the one-pass forward.
    let primitive = match primitive.downcast::<FloatTensor<NdArray<f32>>>() {
        Ok(x) => return backend_tensor(Box::new(op.forward::<NdArray<f32>>(*x))),
        Err(p) => p,
    };
    fallback(backend_tensor(primitive))
}

/// A tensor of `B` from a primitive known to be `B`'s (it came from, or was checked against,
/// `B`'s type).
fn backend_tensor<B: Backend, const D: usize>(primitive: Box<dyn Any>) -> Tensor<B, D> {
    match primitive.downcast::<FloatTensor<B>>() {
        Ok(p) => Tensor::from_primitive(TensorPrimitive::Float(*p)),
        Err(_) => unreachable!("the primitive's type is B's float tensor type"),
    }
}

/// The ops' two directions on an inner backend: by default from the backend's tensor ops,
/// on the CPU backend as single host passes.
trait Kernels: Backend {
    /// `x Φ(x)`.
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad · (Φ(x) + x φ(x))`.
    fn exact_gelu_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_mul(grad, gelu_derivative::<Self>(x))
    }

    fn softmax_forward(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        Self::softmax(x, dim)
    }

    /// `p ⊙ (g − Σ_dim p ⊙ g)` from the output `p`.
    fn softmax_grad(p: FloatTensor<Self>, grad: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        softmax_grad_from_ops::<Self>(p, grad, dim)
    }
}

/// The host kernels work on f32 data; anything else (burn's CPU backend can hold other
/// float types when a program also creates them) takes the backend's ops.
impl Kernels for NdArray<f32> {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if host::is_f32(&x) {
            host::map(&x, host::gelu)
        } else {
            Self::gelu(x)
        }
    }

    fn exact_gelu_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if host::is_f32(&x) && host::is_f32(&grad) {
            host::zip(&x, &grad, |x, g| g * host::gelu_derivative(x))
        } else {
            Self::float_mul(grad, gelu_derivative::<Self>(x))
        }
    }

    fn softmax_forward(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        if host::is_f32(&x) && host::is_last(&x, dim) {
            host::softmax_rows(&x)
        } else {
            Self::softmax(x, dim)
        }
    }

    fn softmax_grad(p: FloatTensor<Self>, grad: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        if host::is_f32(&p) && host::is_f32(&grad) && host::is_last(&p, dim) {
            host::softmax_grad_rows(&p, &grad)
        } else {
            softmax_grad_from_ops::<Self>(p, grad, dim)
        }
    }
}

#[cfg(feature = "cuda")]
impl Kernels for burn::backend::Cuda<f32> {}

/// `Φ(x) + x φ(x)` with `Φ(x) = (1 + erf(x/√2))/2` and `φ(x) = exp(-x²/2)/√(2π)`.
fn gelu_derivative<I: Backend>(x: FloatTensor<I>) -> FloatTensor<I> {
    let erf = I::float_erf(I::float_mul_scalar(x.clone(), FRAC_1_SQRT_2.into()));
    let cdf = I::float_mul_scalar(I::float_add_scalar(erf, 1.0.into()), 0.5.into());
    let square = I::float_mul(x.clone(), x.clone());
    let pdf = I::float_mul_scalar(I::float_exp(I::float_mul_scalar(square, (-0.5).into())), (1.0 / (2.0 * PI).sqrt()).into());
    I::float_add(cdf, I::float_mul(x, pdf))
}

fn softmax_grad_from_ops<I: Backend>(p: FloatTensor<I>, grad: FloatTensor<I>, dim: usize) -> FloatTensor<I> {
    let dot = I::float_sum_dim(I::float_mul(p.clone(), grad.clone()), dim);
    I::float_mul(p, I::float_sub(grad, dot))
}

#[derive(Clone, Copy, Debug)]
struct Gelu;

/// GELU's backward: `grad · (Φ(x) + x φ(x))` from the saved input `x`.
#[derive(Debug)]
struct GeluBackward;

impl<I: Kernels> Backward<I, 1> for GeluBackward {
    type State = FloatTensor<I>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<I, _>(ops.parents, ops.node, grads, |grad| I::exact_gelu_grad(x, grad));
    }
}

impl FusedOp for Gelu {
    fn forward<I: Kernels>(self, x: FloatTensor<I>) -> FloatTensor<I> {
        I::exact_gelu(x)
    }

    fn tracked<I: Kernels, C: CheckpointStrategy>(self, x: FloatTensor<Autodiff<I, C>>) -> FloatTensor<Autodiff<I, C>> {
        match GeluBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = I::exact_gelu(x.primitive.clone());
                prep.finish(x.primitive, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(I::exact_gelu(x.primitive)),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Softmax {
    dim: usize,
}

/// Softmax's backward from the saved output and the dimension.
#[derive(Debug)]
struct SoftmaxBackward;

impl<I: Kernels> Backward<I, 1> for SoftmaxBackward {
    type State = (FloatTensor<I>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (p, dim) = ops.state;
        unary::<I, _>(ops.parents, ops.node, grads, |grad| I::softmax_grad(p, grad, dim));
    }
}

impl FusedOp for Softmax {
    fn forward<I: Kernels>(self, x: FloatTensor<I>) -> FloatTensor<I> {
        I::softmax_forward(x, self.dim)
    }

    fn tracked<I: Kernels, C: CheckpointStrategy>(self, x: FloatTensor<Autodiff<I, C>>) -> FloatTensor<Autodiff<I, C>> {
        match SoftmaxBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let p = I::softmax_forward(x.primitive, self.dim);
                prep.finish((p.clone(), self.dim), p)
            }
            OpsKind::UnTracked(prep) => prep.finish(I::softmax_forward(x.primitive, self.dim)),
        }
    }
}

/// A row norm with frozen weights, on the CPU backend: LayerNorm (`centered`, with β) or
/// RMSNorm (neither).
struct RowNorm {
    gamma: Arc<[f32]>,
    beta: Option<Arc<[f32]>>,
    eps: f32,
    centered: bool,
}

/// A row norm's backward to its input from the saved `x̂`, the inverse scale per row and γ.
#[derive(Debug)]
struct RowNormBackward;

impl Backward<NdArray<f32>, 1> for RowNormBackward {
    type State = (FloatTensor<NdArray<f32>>, Vec<f32>, Arc<[f32]>, bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (normed, inv_scale, gamma, centered) = ops.state;
        unary::<NdArray<f32>, _>(ops.parents, ops.node, grads, |grad| host::row_norm_grad(&normed, &inv_scale, &gamma, &grad, centered));
    }
}

impl RowNorm {
    /// Output, `x̂` and the inverse scale per row.
    fn rows(&self, x: &FloatTensor<NdArray<f32>>) -> (FloatTensor<NdArray<f32>>, FloatTensor<NdArray<f32>>, Vec<f32>) {
        host::row_norm(x, &self.gamma, self.beta.as_deref(), self.eps, self.centered)
    }

    fn tracked(self, x: FloatTensor<Autodiff<NdArray<f32>>>) -> FloatTensor<Autodiff<NdArray<f32>>> {
        let (y, normed, inv_scale) = self.rows(&x.primitive);
        match RowNormBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((normed, inv_scale, self.gamma, self.centered), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// The cross-entropy's backward from the saved logits, log-sum-exps and targets.
#[derive(Debug)]
struct CrossEntropyBackward;

impl Backward<NdArray<f32>, 1> for CrossEntropyBackward {
    type State = (FloatTensor<NdArray<f32>>, Arc<[f32]>, Arc<[i64]>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, lse, targets) = ops.state;
        unary::<NdArray<f32>, _>(ops.parents, ops.node, grads, |grad| host::cross_entropy_grad(&logits, &lse, &targets, &grad));
    }
}

fn cross_entropy_tracked(logits: FloatTensor<Autodiff<NdArray<f32>>>, targets: Arc<[i64]>) -> FloatTensor<Autodiff<NdArray<f32>>> {
    let (loss, lse) = host::cross_entropy_rows(&logits.primitive, &targets);
    match CrossEntropyBackward.prepare::<NoCheckpointing>([logits.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((logits.primitive, lse.into(), targets), loss),
        OpsKind::UnTracked(prep) => prep.finish(loss),
    }
}

/// SwiGLU's backward from the saved `gate` and `up`: both gradients in one pass.
#[derive(Debug)]
struct SiluMulBackward;

impl Backward<NdArray<f32>, 2> for SiluMulBackward {
    type State = (FloatTensor<NdArray<f32>>, FloatTensor<NdArray<f32>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (gate, up) = ops.state;
        let grad = grads.consume::<NdArray<f32>>(&ops.node);
        let [gate_node, up_node] = ops.parents;
        let (d_gate, d_up) = host::silu_mul_grad(&gate, &up, &grad);
        if let Some(node) = gate_node {
            grads.register::<NdArray<f32>>(node.id, d_gate);
        }
        if let Some(node) = up_node {
            grads.register::<NdArray<f32>>(node.id, d_up);
        }
    }
}

fn silu_mul_tracked(
    gate: FloatTensor<Autodiff<NdArray<f32>>>,
    up: FloatTensor<Autodiff<NdArray<f32>>>,
) -> FloatTensor<Autodiff<NdArray<f32>>> {
    let y = host::zip(&gate.primitive, &up.primitive, host::silu_mul);
    match SiluMulBackward.prepare::<NoCheckpointing>([gate.node.clone(), up.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((gate.primitive, up.primitive), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// Elementwise kernels over the CPU backend's f32 tensors: each output element written once,
/// from contiguous input slices, in parallel chunks on rayon's pool (the one burn-ndarray's
/// own kernels use).
mod host {
    use std::borrow::Cow;
    use std::f32::consts::FRAC_1_SQRT_2;

    use burn::tensor::{TensorData, TensorMetadata};
    use burn_ndarray::NdArrayTensor;
    use rayon::prelude::*;

    /// Elements per parallel task: large enough that scheduling is noise, small enough
    /// that both cores get work on the smallest activations (a few hundred thousand).
    const CHUNK: usize = 1 << 14;
    /// 1/√(2π).
    const INV_SQRT_2PI: f32 = 0.398_942_3;

    pub fn gelu(x: f32) -> f32 {
        0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
    }

    /// `Φ(x) + x φ(x)`.
    pub fn gelu_derivative(x: f32) -> f32 {
        0.5 * (1.0 + erf(x * FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x)
    }

    /// Runs `f` compiled for AVX2 and FMA where the CPU has them (rankfit builds for baseline
    /// x86-64, whose SSE2 holds 4 floats a vector; AVX2 holds 8). The kernels' loops are the
    /// same operations in the same order either way (Rust never contracts `a * b + c` into an
    /// FMA), so results are identical bit for bit.
    #[inline(always)]
    fn wide<R>(f: impl FnOnce() -> R) -> R {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has the features `avx2` is compiled for.
                return unsafe { avx2(f) };
            }
        }
        f()
    }

    /// `e^x` without a libm call, so that loops over it vectorise (glibc's `expf` is a scalar
    /// call; it took 7% of an ALoRA ablation round). Cody–Waite reduction `x = n ln2 + r` with
    /// `|r| ≤ ln2/2`, Cephes' `expf` polynomial for `e^r`, and `2^n` written into the exponent
    /// bits. Relative error below 2.5e-7 (`fast_exp_is_within_its_bound`). Arguments below
    /// −87 (where `e^x` < 1.7e-38) give 0 and arguments above 88 give `e^88`; NaN stays NaN.
    #[inline]
    pub fn exp(x: f32) -> f32 {
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        // 1.5 · 2^23: adding it rounds to the nearest integer, which its low mantissa bits hold.
        const ROUND: f32 = 12_582_912.0;
        let c = x.clamp(-87.0, 88.0);
        let t = c * std::f32::consts::LOG2_E + ROUND;
        let n = t - ROUND;
        let r = c - n * LN2_HI - n * LN2_LO;
        let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5) * r * r
            + r
            + 1.0;
        let two_n = f32::from_bits(((t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23) as u32);
        if x < -87.0 {
            0.0
        } else {
            p * two_n
        }
    }

    /// erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7; ≤ 5.1e-7 evaluated in f32,
    /// `fast_erf_is_within_its_bound`), the approximation
    /// PyTorch's vectorised CPU `erf` (and so its GELU) uses. libm's `erff` is exact to the
    /// last bit but took a quarter of an ALoRA ablation round (`erfc2` + `erff` 23% of its
    /// CPU time; BENCHMARKS.md).
    pub fn erf(x: f32) -> f32 {
        let a = x.abs();
        let t = 1.0 / (1.0 + 0.327_591_1 * a);
        let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6) * t;
        (1.0 - poly * exp(-a * a)).copysign(x)
    }

    /// The tensor's elements in logical (row-major) order, borrowed when already laid out so.
    pub fn values(t: &NdArrayTensor) -> Cow<'_, [f32]> {
        match t {
            NdArrayTensor::F32(storage) => {
                let view = storage.view();
                match view.to_slice() {
                    Some(slice) => Cow::Borrowed(slice),
                    None => Cow::Owned(view.iter().copied().collect()),
                }
            }
            other => unreachable!("host kernels are only called on f32 tensors, not {:?}", other.dtype()),
        }
    }

    fn tensor(values: Vec<f32>, like: &NdArrayTensor) -> NdArrayTensor {
        NdArrayTensor::from_data(TensorData::new(values, like.shape()))
    }

    /// `f` of every element of `x`.
    pub fn map(x: &NdArrayTensor, f: impl Fn(f32) -> f32 + Sync) -> NdArrayTensor {
        let xs = values(x);
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).for_each(|(o, x)| {
            wide(|| {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = f(x);
                }
            })
        });
        tensor(out, x)
    }

    pub fn is_f32(t: &NdArrayTensor) -> bool {
        matches!(t, NdArrayTensor::F32(_))
    }

    /// Whether `dim` is the tensor's last dimension (the rows the row kernels work on).
    pub fn is_last(t: &NdArrayTensor, dim: usize) -> bool {
        dim + 1 == t.shape().num_dims()
    }

    /// LayerNorm (`centered`: `x̂ = (x − mean)/σ`, `y = γx̂ + β`) or RMSNorm (`x̂ = x/rms`,
    /// `y = γx̂`) of every row (last dimension): the output, `x̂` and `1/σ` (`1/rms`) per row.
    pub fn row_norm(
        x: &NdArrayTensor,
        gamma: &[f32],
        beta: Option<&[f32]>,
        eps: f32,
        centered: bool,
    ) -> (NdArrayTensor, NdArrayTensor, Vec<f32>) {
        let xs = values(x);
        let n = gamma.len();
        assert_eq!(x.shape().last(), Some(&n), "row norm over {n} features of a tensor of shape {:?}", x.shape());
        let (mut out, mut normed, mut inv_scale) = (vec![0f32; xs.len()], vec![0f32; xs.len()], vec![0f32; xs.len() / n.max(1)]);
        let rows = (CHUNK / n.max(1)).max(1);
        out.par_chunks_mut(rows * n)
            .zip(normed.par_chunks_mut(rows * n))
            .zip(inv_scale.par_chunks_mut(rows))
            .zip(xs.par_chunks(rows * n))
            .for_each(|(((o, h), r), x)| {
                wide(|| {
                    for (((o, h), r), x) in o.chunks_mut(n).zip(h.chunks_mut(n)).zip(r.iter_mut()).zip(x.chunks(n)) {
                        let mean = if centered { x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64 } else { 0.0 };
                        let var = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n as f64;
                        *r = (1.0 / (var + f64::from(eps)).sqrt()) as f32;
                        let mean = mean as f32;
                        for (((o, h), &x), &g) in o.iter_mut().zip(h.iter_mut()).zip(x).zip(gamma) {
                            *h = (x - mean) * *r;
                            *o = *h * g;
                        }
                        if let Some(beta) = beta {
                            o.iter_mut().zip(beta).for_each(|(o, b)| *o += b);
                        }
                    }
                })
            });
        (tensor(out, x), tensor(normed, x), inv_scale)
    }

    /// A row norm's gradient to its input per row, from `x̂` and the inverse scale `r`:
    /// LayerNorm `(γg − mean(γg) − x̂ · mean(γg ⊙ x̂)) r`, RMSNorm `(γg − x̂ · mean(γg ⊙ x̂)) r`.
    pub fn row_norm_grad(normed: &NdArrayTensor, inv_scale: &[f32], gamma: &[f32], grad: &NdArrayTensor, centered: bool) -> NdArrayTensor {
        assert_eq!(normed.shape(), grad.shape(), "row norm gradient of another shape than its output");
        let (hs, gs) = (values(normed), values(grad));
        let n = gamma.len();
        let mut out = vec![0f32; hs.len()];
        let rows = (CHUNK / n.max(1)).max(1);
        out.par_chunks_mut(rows * n).zip(inv_scale.par_chunks(rows)).zip(hs.par_chunks(rows * n).zip(gs.par_chunks(rows * n))).for_each(
            |((o, r), (h, g))| {
                wide(|| {
                    for (((o, &r), h), g) in o.chunks_mut(n).zip(r).zip(h.chunks(n)).zip(g.chunks(n)) {
                        let (mut a, mut b) = (0f32, 0f32);
                        for ((&h, &g), &w) in h.iter().zip(g).zip(gamma) {
                            a += g * w;
                            b += g * w * h;
                        }
                        let (a, b) = (if centered { a / n as f32 } else { 0.0 }, b / n as f32);
                        for (((o, &h), &g), &w) in o.iter_mut().zip(h).zip(g).zip(gamma) {
                            *o = (g * w - a - h * b) * r;
                        }
                    }
                })
            },
        );
        tensor(out, normed)
    }

    /// Per row of `[n, classes]` logits: `logsumexp(row) − row[target]`, and the log-sum-exp.
    pub fn cross_entropy_rows(logits: &NdArrayTensor, targets: &[i64]) -> (NdArrayTensor, Vec<f32>) {
        let xs = values(logits);
        let classes = *logits.shape().last().expect("logits of rank 2");
        let (mut loss, mut lse) = (vec![0f32; targets.len()], vec![0f32; targets.len()]);
        loss.par_iter_mut().zip(lse.par_iter_mut()).zip(xs.par_chunks(classes).zip(targets.par_iter())).for_each(
            |((loss, lse), (x, &t))| {
                wide(|| {
                    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f64 = x.iter().map(|&v| f64::from(exp(v - max))).sum();
                    *lse = max + sum.ln() as f32;
                    *loss = *lse - x[t as usize];
                })
            },
        );
        (NdArrayTensor::from_data(TensorData::new(loss, [targets.len()])), lse)
    }

    /// The cross-entropy's gradient to the logits: `g_row · (exp(x − lse_row) − onehot)`.
    pub fn cross_entropy_grad(logits: &NdArrayTensor, lse: &[f32], targets: &[i64], grad: &NdArrayTensor) -> NdArrayTensor {
        let (xs, gs) = (values(logits), values(grad));
        let classes = *logits.shape().last().expect("logits of rank 2");
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(classes).zip(xs.par_chunks(classes)).zip(lse.par_iter().zip(targets.par_iter()).zip(gs.par_iter())).for_each(
            |((o, x), ((&lse, &t), &g))| {
                wide(|| {
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = g * exp(x - lse);
                    }
                    o[t as usize] -= g;
                })
            },
        );
        tensor(out, logits)
    }

    /// `silu(gate) · up`.
    pub fn silu_mul(gate: f32, up: f32) -> f32 {
        gate / (1.0 + exp(-gate)) * up
    }

    /// SwiGLU's gradients `(∂gate, ∂up)` in one pass.
    pub fn silu_mul_grad(gate: &NdArrayTensor, up: &NdArrayTensor, grad: &NdArrayTensor) -> (NdArrayTensor, NdArrayTensor) {
        assert!(gate.shape() == up.shape() && up.shape() == grad.shape(), "SwiGLU gradient of tensors of different shapes");
        let (xs, us, gs) = (values(gate), values(up), values(grad));
        let (mut dx, mut du) = (vec![0f32; xs.len()], vec![0f32; xs.len()]);
        dx.par_chunks_mut(CHUNK)
            .zip(du.par_chunks_mut(CHUNK))
            .zip(xs.par_chunks(CHUNK).zip(us.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK))))
            .for_each(|((dx, du), (x, (u, g)))| {
                wide(|| {
                    for i in 0..x.len() {
                        let s = 1.0 / (1.0 + exp(-x[i]));
                        dx[i] = g[i] * u[i] * s * (1.0 + x[i] * (1.0 - s));
                        du[i] = g[i] * x[i] * s;
                    }
                })
            });
        (tensor(dx, gate), tensor(du, gate))
    }

    /// Softmax of every row (last dimension): max, exp and sum, scale; one write per element.
    pub fn softmax_rows(x: &NdArrayTensor) -> NdArrayTensor {
        let xs = values(x);
        let n = *x.shape().last().expect("softmax of a scalar");
        let mut out = vec![0f32; xs.len()];
        let rows = (CHUNK / n.max(1)).max(1) * n;
        out.par_chunks_mut(rows).zip(xs.par_chunks(rows)).for_each(|(o, x)| {
            wide(|| {
                for (o, x) in o.chunks_mut(n).zip(x.chunks(n)) {
                    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = exp(x - max);
                    }
                    let inv = 1.0 / o.iter().sum::<f32>();
                    o.iter_mut().for_each(|o| *o *= inv);
                }
            })
        });
        tensor(out, x)
    }

    /// Softmax's backward per row from its output: `p ⊙ (g − Σ p ⊙ g)`.
    pub fn softmax_grad_rows(p: &NdArrayTensor, grad: &NdArrayTensor) -> NdArrayTensor {
        assert_eq!(p.shape(), grad.shape(), "softmax gradient of another shape than its output");
        let (ps, gs) = (values(p), values(grad));
        let n = *p.shape().last().expect("softmax of a scalar");
        let mut out = vec![0f32; ps.len()];
        let rows = (CHUNK / n.max(1)).max(1) * n;
        out.par_chunks_mut(rows).zip(ps.par_chunks(rows).zip(gs.par_chunks(rows))).for_each(|(o, (p, g))| {
            wide(|| {
                for ((o, p), g) in o.chunks_mut(n).zip(p.chunks(n)).zip(g.chunks(n)) {
                    let dot: f32 = p.iter().zip(g).map(|(p, g)| p * g).sum();
                    for ((o, &p), &g) in o.iter_mut().zip(p).zip(g) {
                        *o = p * (g - dot);
                    }
                }
            })
        });
        tensor(out, p)
    }

    /// `f` of every pair of elements of `a` and `b` (same shape).
    pub fn zip(a: &NdArrayTensor, b: &NdArrayTensor, f: impl Fn(f32, f32) -> f32 + Sync) -> NdArrayTensor {
        assert_eq!(a.shape(), b.shape(), "elementwise kernel on tensors of different shapes");
        let (xs, ys) = (values(a), values(b));
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK).zip(ys.par_chunks(CHUNK))).for_each(|(o, (x, y))| {
            wide(|| {
                for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                    *o = f(x, y);
                }
            })
        });
        tensor(out, a)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::{
        cross_entropy_from_ops, cross_entropy_rows, gelu, gelu_from_ops, layer_norm, layer_norm_from_ops, rms_norm, rms_norm_from_ops,
        silu_mul, softmax,
    };

    type Cpu = burn::backend::NdArray<f32>;
    type Ad = burn::backend::Autodiff<Cpu>;

    fn pdf(x: f64) -> f64 {
        (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }

    /// Φ(x) by Simpson's rule from 0 (independent of any erf implementation).
    fn cdf(x: f64) -> f64 {
        let n = 2000;
        let h = x / n as f64;
        let s: f64 = (0..=n)
            .map(|i| {
                pdf(i as f64 * h)
                    * if i == 0 || i == n {
                        1.0
                    } else if i % 2 == 1 {
                        4.0
                    } else {
                        2.0
                    }
            })
            .sum();
        0.5 + s * h / 3.0
    }

    fn xs() -> Vec<f32> {
        (-60..=60).map(|i| i as f32 * 0.1).collect()
    }

    fn grad_of(f: fn(Tensor<Ad, 2>) -> Tensor<Ad, 2>) -> Vec<f32> {
        let xs = xs();
        let x = Tensor::<Ad, 2>::from_data(TensorData::new(xs.clone(), [11, 11]), &Default::default()).require_grad();
        let g = f(x.clone()).sum().backward();
        x.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap()
    }

    /// Worst |gradient - (Φ(x) + x φ(x))| and worst |gradient - central finite difference of x Φ(x)|.
    fn errors(grad: &[f32]) -> (f64, f64) {
        let (mut exact, mut fd) = (0f64, 0f64);
        for (&x, &g) in xs().iter().zip(grad) {
            let (x, g) = (f64::from(x), f64::from(g));
            exact = exact.max((g - (cdf(x) + x * pdf(x))).abs());
            let h = 1e-3;
            fd = fd.max((g - ((x + h) * cdf(x + h) - (x - h) * cdf(x - h)) / (2.0 * h)).abs());
        }
        (exact, fd)
    }

    /// The fused op's gradient (and the tensor-op fallback's) is GELU's exact derivative;
    /// burn's own `gelu` backward is off by far more (the tanh approximation's derivative).
    #[test]
    fn gelu_gradient_is_the_exact_derivative() {
        for (name, f) in [("fused", gelu as fn(Tensor<Ad, 2>) -> Tensor<Ad, 2>), ("from ops", gelu_from_ops)] {
            let (exact, fd) = errors(&grad_of(f));
            assert!(exact < 2e-6 && fd < 2e-6, "{name}: {exact:.2e} off Φ(x) + xφ(x), {fd:.2e} off the finite difference");
        }
        let (burns, _) = errors(&grad_of(burn::tensor::activation::gelu));
        assert!(burns > 1e-4, "burn's gelu gradient is exact now ({burns:.2e} off): its own op would do");
    }

    /// Forward: x Φ(x) on both the autodiff and the plain backend.
    #[test]
    fn gelu_forward_is_the_erf_form() {
        let xs = xs();
        let dev = Default::default();
        let ad = gelu(Tensor::<Ad, 2>::from_data(TensorData::new(xs.clone(), [11, 11]), &dev)).into_data().to_vec::<f32>().unwrap();
        let plain = gelu(Tensor::<Cpu, 2>::from_data(TensorData::new(xs.clone(), [11, 11]), &dev)).into_data().to_vec::<f32>().unwrap();
        for ((&x, a), p) in xs.iter().zip(ad).zip(plain) {
            let want = f64::from(x) * cdf(f64::from(x));
            assert!((f64::from(a) - want).abs() < 2e-6 && (f64::from(p) - want).abs() < 2e-6, "gelu({x}) = {a} / {p}, want {want}");
        }
    }

    /// Logits, upstream gradient and shape of a softmax test.
    type SoftmaxCase = (Vec<f32>, Vec<f32>, [usize; 2]);

    /// Rows of logits, from mild to an attention head that puts nearly all weight on one
    /// token, and an upstream gradient, both deterministic.
    fn softmax_case() -> SoftmaxCase {
        let (rows, n) = (6, 24);
        let mut logits = Vec::new();
        for r in 0..rows {
            let scale = [0.5f32, 2.0, 4.0, 6.0, 8.0, 9.0][r];
            logits.extend((0..n).map(|j| if j == (r * 5) % n { scale } else { ((j * 7 + r * 3) % 11) as f32 * 0.1 - 0.5 }));
        }
        let grad = (0..rows * n).map(|i| ((i * 13) % 17) as f32 * 0.1 - 0.8).collect();
        (logits, grad, [rows, n])
    }

    /// `p ⊙ (g − Σ p ⊙ g)` per row in f64 from the same f32 inputs.
    fn softmax_grad_f64(logits: &[f32], grad: &[f32], n: usize) -> Vec<f64> {
        let mut out = Vec::new();
        for (x, g) in logits.chunks(n).zip(grad.chunks(n)) {
            let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let e: Vec<f64> = x.iter().map(|&v| (f64::from(v) - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|e| e / sum).collect();
            let dot: f64 = p.iter().zip(g).map(|(p, &g)| p * f64::from(g)).sum();
            out.extend(p.iter().zip(g).map(|(p, &g)| p * (f64::from(g) - dot)));
        }
        out
    }

    /// Worst error of each row's gradient relative to that row's largest exact entry.
    /// Attention-like rows: 64 rows of 128 logits spread over [-6, 6] (a deterministic
    /// scramble), an upstream gradient in [-1, 1].
    fn attention_case() -> SoftmaxCase {
        let (rows, n) = (64, 128);
        let spread = |i: usize, k: usize, m: usize| (i.wrapping_mul(k) % m) as f32 / (m - 1) as f32;
        let logits = (0..rows * n).map(|i| 12.0 * spread(i, 7919, 1009) - 6.0).collect();
        let grad = (0..rows * n).map(|i| 2.0 * spread(i, 104_729, 997) - 1.0).collect();
        (logits, grad, [rows, n])
    }

    fn softmax_grad_error(f: fn(Tensor<Ad, 2>) -> Tensor<Ad, 2>, transposed: bool, case: fn() -> SoftmaxCase) -> f64 {
        let (logits, grad, [rows, n]) = case();
        let dev = Default::default();
        let x = if transposed {
            // The same logits laid out column-major: the kernels must read logical order.
            let t: Vec<f32> = (0..n).flat_map(|j| (0..rows).map(move |r| (r, j))).map(|(r, j)| logits[r * n + j]).collect();
            Tensor::<Ad, 2>::from_data(TensorData::new(t, [n, rows]), &dev).require_grad()
        } else {
            Tensor::<Ad, 2>::from_data(TensorData::new(logits.clone(), [rows, n]), &dev).require_grad()
        };
        let logical = if transposed { x.clone().swap_dims(0, 1) } else { x.clone() };
        let g = Tensor::<Ad, 2>::from_data(TensorData::new(grad.clone(), [rows, n]), &dev);
        let grads = (f(logical) * g).sum().backward();
        let mut got = x.grad(&grads).unwrap();
        if transposed {
            got = got.swap_dims(0, 1);
        }
        let got = got.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        let want = softmax_grad_f64(&logits, &grad, n);
        let mut worst = 0f64;
        for (g, w) in got.chunks(n).zip(want.chunks(n)) {
            let scale = w.iter().fold(0f64, |m, w| m.max(w.abs()));
            let mut row = 0f64;
            for (g, w) in g.iter().zip(w) {
                row = row.max((f64::from(*g) - w).abs() / scale);
            }
            worst = worst.max(row);
        }
        worst
    }

    /// The fused softmax's gradient is `p ⊙ (g − Σ p ⊙ g)` from the f32 output, as PyTorch
    /// computes it, on rows from flat to nearly one-hot, in row-major and transposed layouts,
    /// and on attention-like rows, where burn's op-by-op backward is hundreds of times
    /// further from the f64 gradient. (Errors are relative to each row's largest entry: a
    /// peaked row's small entries carry f32's rounding of `1 − p_max`, in PyTorch as here.)
    #[test]
    fn softmax_gradient_is_the_analytic_one() {
        let fused = softmax_grad_error(|x| softmax(x, 1), false, softmax_case);
        let fused_t = softmax_grad_error(|x| softmax(x, 1), true, softmax_case);
        assert!(fused < 2e-4 && fused_t < 2e-4, "fused softmax gradient {fused:.2e} / {fused_t:.2e} (transposed) off the f64 one");
        let fused = softmax_grad_error(|x| softmax(x, 1), false, attention_case);
        let burns = softmax_grad_error(|x| burn::tensor::activation::softmax(x, 1), false, attention_case);
        assert!(fused < 5e-6, "fused softmax gradient {fused:.2e} off the f64 one on attention-like rows");
        assert!(burns > 10.0 * fused, "burn's softmax gradient is as precise now ({burns:.2e} vs {fused:.2e}): its own op would do");
    }

    /// Forward: the softmax of every row, along the last dimension (the host kernel) and
    /// along another one (the backend's ops), with and without autodiff.
    #[test]
    fn softmax_forward_matches_f64() {
        let (logits, _, [rows, n]) = softmax_case();
        let dev = Default::default();
        let want: Vec<f64> = logits
            .chunks(n)
            .flat_map(|x| {
                let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
                let sum: f64 = x.iter().map(|&v| (f64::from(v) - max).exp()).sum();
                x.iter().map(move |&v| (f64::from(v) - max).exp() / sum)
            })
            .collect();
        let plain = Tensor::<Cpu, 2>::from_data(TensorData::new(logits.clone(), [rows, n]), &dev);
        let ad = Tensor::<Ad, 2>::from_data(TensorData::new(logits.clone(), [rows, n]), &dev);
        let outputs = [
            softmax(plain.clone(), 1).into_data(),
            softmax(ad, 1).into_data(),
            softmax(plain.swap_dims(0, 1), 0).swap_dims(0, 1).into_data(),
        ];
        for out in outputs {
            for (g, w) in out.to_vec::<f32>().unwrap().iter().zip(&want) {
                assert!((f64::from(*g) - w).abs() < 1e-6, "softmax {g} vs {w}");
            }
        }
    }

    /// The fused layer norm against burn's composed ops (autodiff through them) and an f64
    /// evaluation of both directions, on rows of BERT's width with a non-trivial γ and β;
    /// with γ trainable it falls back to the ops and γ gets its gradient.
    #[test]
    fn layer_norm_matches_the_composed_ops_and_f64() {
        let (rows, n) = (6, 384);
        let dev = Default::default();
        let wave = |i: usize, k: f32| ((i as f32 * k).sin() * 2.0) + (i % 7) as f32 * 0.3;
        let xs: Vec<f32> = (0..rows * n).map(|i| wave(i, 0.37)).collect();
        let ups: Vec<f32> = (0..rows * n).map(|i| wave(i, 1.13) * 0.5).collect();
        let gamma: Vec<f32> = (0..n).map(|i| 1.0 + 0.5 * (i as f32 * 0.05).cos()).collect();
        let beta: Vec<f32> = (0..n).map(|i| 0.1 * (i as f32 * 0.11).sin()).collect();
        let t1 = |v: &[f32]| Tensor::<Ad, 1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev);
        type Norm = fn(Tensor<Ad, 2>, &Tensor<Ad, 1>, &Tensor<Ad, 1>, f64) -> Tensor<Ad, 2>;
        let run = |f: Norm, g: Tensor<Ad, 1>| {
            let x = Tensor::<Ad, 2>::from_data(TensorData::new(xs.clone(), [rows, n]), &dev).require_grad();
            let up = Tensor::<Ad, 2>::from_data(TensorData::new(ups.clone(), [rows, n]), &dev);
            let y = f(x.clone(), &g, &t1(&beta), 1e-12);
            let grads = (y.clone() * up).sum().backward();
            let dx = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            (y.into_data().to_vec::<f32>().unwrap(), dx, g.grad(&grads).map(|t| t.into_data().to_vec::<f32>().unwrap()))
        };
        // f64: y = γ x̂ + β, dx = (γg − mean(γg) − x̂ mean(γg x̂)) / σ.
        let (mut want_y, mut want_dx) = (Vec::new(), Vec::new());
        for (x, u) in xs.chunks(n).zip(ups.chunks(n)) {
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            let var = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (var + 1e-12).sqrt();
            let h: Vec<f64> = x.iter().map(|&v| (f64::from(v) - mean) * inv).collect();
            let gg: Vec<f64> = u.iter().zip(&gamma).map(|(&u, &g)| f64::from(u) * f64::from(g)).collect();
            let a = gg.iter().sum::<f64>() / n as f64;
            let b = gg.iter().zip(&h).map(|(g, h)| g * h).sum::<f64>() / n as f64;
            want_y.extend(h.iter().zip(&gamma).zip(&beta).map(|((h, &g), &b)| h * f64::from(g) + f64::from(b)));
            want_dx.extend(gg.iter().zip(&h).map(|(g, h)| (g - a - h * b) * inv));
        }
        let worst = |got: &[f32], want: &[f64]| {
            let scale = want.iter().fold(0f64, |m, w| m.max(w.abs()));
            got.iter().zip(want).map(|(&g, w)| (f64::from(g) - w).abs() / scale).fold(0f64, f64::max)
        };
        let (y, dx, dgamma) = run(layer_norm, t1(&gamma));
        assert!(dgamma.is_none(), "γ is frozen");
        let (y_ops, dx_ops, _) = run(layer_norm_from_ops, t1(&gamma));
        for (name, y, dx) in [("fused", &y, &dx), ("ops", &y_ops, &dx_ops)] {
            let (ey, edx) = (worst(y, &want_y), worst(dx, &want_dx));
            assert!(ey < 1e-6 && edx < 1e-5, "{name} layer norm: output {ey:.2e}, input gradient {edx:.2e} off the f64 one");
        }
        // A trainable γ: the composed ops, with γ's gradient.
        let (y_t, dx_t, dgamma) = run(layer_norm, t1(&gamma).require_grad());
        assert!(dgamma.is_some(), "a trainable γ gets its gradient");
        assert!(worst(&y_t, &want_y) < 1e-6 && worst(&dx_t, &want_dx) < 1e-5);
    }

    /// The fused RMSNorm against burn's composed ops and an f64 evaluation of both directions
    /// (SmolLM2's width, a non-trivial weight); a trainable weight falls back to the ops.
    #[test]
    fn rms_norm_matches_the_composed_ops_and_f64() {
        let (rows, n) = (5, 576);
        let dev = Default::default();
        let wave = |i: usize, k: f32| ((i as f32 * k).sin() * 2.0) + (i % 5) as f32 * 0.4;
        let xs: Vec<f32> = (0..rows * n).map(|i| wave(i, 0.29)).collect();
        let ups: Vec<f32> = (0..rows * n).map(|i| wave(i, 0.91) * 0.5).collect();
        let weight: Vec<f32> = (0..n).map(|i| 0.5 + (i as f32 * 0.07).cos().abs()).collect();
        let w = |trainable: bool| {
            let t = Tensor::<Ad, 1>::from_data(TensorData::new(weight.clone(), [n]), &dev);
            if trainable {
                t.require_grad()
            } else {
                t
            }
        };
        type Norm = fn(Tensor<Ad, 2>, &Tensor<Ad, 1>, f64) -> Tensor<Ad, 2>;
        let run = |f: Norm, w: Tensor<Ad, 1>| {
            let x = Tensor::<Ad, 2>::from_data(TensorData::new(xs.clone(), [rows, n]), &dev).require_grad();
            let up = Tensor::<Ad, 2>::from_data(TensorData::new(ups.clone(), [rows, n]), &dev);
            let y = f(x.clone(), &w, 1e-5);
            let grads = (y.clone() * up).sum().backward();
            let dx = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            (y.into_data().to_vec::<f32>().unwrap(), dx, w.grad(&grads).is_some())
        };
        let (mut want_y, mut want_dx) = (Vec::new(), Vec::new());
        for (x, u) in xs.chunks(n).zip(ups.chunks(n)) {
            let inv = 1.0 / (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n as f64 + 1e-5).sqrt();
            let h: Vec<f64> = x.iter().map(|&v| f64::from(v) * inv).collect();
            let gw: Vec<f64> = u.iter().zip(&weight).map(|(&u, &w)| f64::from(u) * f64::from(w)).collect();
            let b = gw.iter().zip(&h).map(|(g, h)| g * h).sum::<f64>() / n as f64;
            want_y.extend(h.iter().zip(&weight).map(|(h, &w)| h * f64::from(w)));
            want_dx.extend(gw.iter().zip(&h).map(|(g, h)| (g - h * b) * inv));
        }
        let worst = |got: &[f32], want: &[f64]| {
            let scale = want.iter().fold(0f64, |m, w| m.max(w.abs()));
            got.iter().zip(want).map(|(&g, w)| (f64::from(g) - w).abs() / scale).fold(0f64, f64::max)
        };
        for (name, f, trainable) in
            [("fused", rms_norm as Norm, false), ("ops", rms_norm_from_ops as Norm, false), ("trainable weight", rms_norm as Norm, true)]
        {
            let (y, dx, weight_grad) = run(f, w(trainable));
            let (ey, edx) = (worst(&y, &want_y), worst(&dx, &want_dx));
            assert!(ey < 1e-6 && edx < 1e-5, "{name} RMSNorm: output {ey:.2e}, input gradient {edx:.2e} off the f64 one");
            assert_eq!(weight_grad, trainable, "{name}: the weight gets a gradient exactly when it is trainable");
        }
        // The plain (no autodiff) backend takes the same kernel.
        let plain = rms_norm(
            Tensor::<Cpu, 2>::from_data(TensorData::new(xs.clone(), [rows, n]), &dev),
            &Tensor::from_data(TensorData::new(weight.clone(), [n]), &dev),
            1e-5,
        );
        assert!(worst(&plain.into_data().to_vec::<f32>().unwrap(), &want_y) < 1e-6);
    }

    /// SwiGLU's fused product and both gradients against f64 (and burn's composed ops),
    /// over gates from -12 to 12.
    #[test]
    fn silu_mul_and_its_gradients_match_f64() {
        let (rows, n) = (8, 300);
        let dev = Default::default();
        let gates: Vec<f32> = (0..rows * n).map(|i| (i as f32 / (rows * n) as f32) * 24.0 - 12.0).collect();
        let ups: Vec<f32> = (0..rows * n).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let outer: Vec<f32> = (0..rows * n).map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0).collect();
        let t = |v: &[f32]| Tensor::<Ad, 2>::from_data(TensorData::new(v.to_vec(), [rows, n]), &dev);
        type Swiglu = fn(Tensor<Ad, 2>, Tensor<Ad, 2>) -> Tensor<Ad, 2>;
        let run = |f: Swiglu| {
            let (g, u) = (t(&gates).require_grad(), t(&ups).require_grad());
            let y = f(g.clone(), u.clone());
            let grads = (y.clone() * t(&outer)).sum().backward();
            let v = |x: TensorData| x.to_vec::<f32>().unwrap();
            (v(y.into_data()), v(g.grad(&grads).unwrap().into_data()), v(u.grad(&grads).unwrap().into_data()))
        };
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mut want = (Vec::new(), Vec::new(), Vec::new());
        for ((&x, &u), &o) in gates.iter().zip(&ups).zip(&outer) {
            let (x, u, o) = (f64::from(x), f64::from(u), f64::from(o));
            want.0.push(x * sig(x) * u);
            want.1.push(o * u * sig(x) * (1.0 + x * (1.0 - sig(x))));
            want.2.push(o * x * sig(x));
        }
        let worst =
            |got: &[f32], want: &[f64]| got.iter().zip(want).map(|(&g, w)| (f64::from(g) - w).abs() / (1.0 + w.abs())).fold(0f64, f64::max);
        for (name, f) in [("fused", silu_mul as Swiglu), ("burn ops", |g, u| burn::tensor::activation::silu(g) * u)] {
            let (y, dg, du) = run(f);
            let errs = (worst(&y, &want.0), worst(&dg, &want.1), worst(&du, &want.2));
            assert!(errs.0 < 1e-6 && errs.1 < 1e-6 && errs.2 < 1e-6, "{name}: output / ∂gate / ∂up off f64 by {errs:?}");
        }
        let plain = silu_mul(
            Tensor::<Cpu, 2>::from_data(TensorData::new(gates.clone(), [rows, n]), &dev),
            Tensor::from_data(TensorData::new(ups.clone(), [rows, n]), &dev),
        );
        assert!(worst(&plain.into_data().to_vec::<f32>().unwrap(), &want.0) < 1e-6);
    }

    /// The fused cross-entropy's loss and logit gradient against f64 (and burn's
    /// log_softmax + gather), on rows from flat to sharply peaked, with a non-uniform upstream
    /// gradient per row.
    #[test]
    fn cross_entropy_and_its_gradient_match_f64() {
        let (rows, n) = (7, 1000);
        let dev = Default::default();
        let logits: Vec<f32> = (0..rows * n).map(|i| (((i * 7919) % 1009) as f32 / 1008.0 - 0.5) * (1.0 + (i / n) as f32 * 4.0)).collect();
        let targets: Vec<i64> = (0..rows).map(|r| ((r * 131) % n) as i64).collect();
        let weights: Vec<f32> = (0..rows).map(|r| 0.5 + r as f32 * 0.25).collect();
        let mut want = (Vec::new(), Vec::new());
        for (r, x) in logits.chunks(n).enumerate() {
            let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let lse = max + x.iter().map(|&v| (f64::from(v) - max).exp()).sum::<f64>().ln();
            want.0.push(lse - f64::from(x[targets[r] as usize]));
            want.1.extend(
                x.iter()
                    .enumerate()
                    .map(|(j, &v)| f64::from(weights[r]) * ((f64::from(v) - lse).exp() - if j as i64 == targets[r] { 1.0 } else { 0.0 })),
            );
        }
        type Ce = fn(Tensor<Ad, 2>, &[i64]) -> Tensor<Ad, 1>;
        for (name, f) in [("fused", cross_entropy_rows as Ce), ("ops", cross_entropy_from_ops as Ce)] {
            let x = Tensor::<Ad, 2>::from_data(TensorData::new(logits.clone(), [rows, n]), &dev).require_grad();
            let loss = f(x.clone(), &targets);
            let w = Tensor::<Ad, 1>::from_data(TensorData::new(weights.clone(), [rows]), &dev);
            let grads = (loss.clone() * w).sum().backward();
            let got_loss = loss.into_data().to_vec::<f32>().unwrap();
            let got_grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            let e_loss = got_loss.iter().zip(&want.0).map(|(&g, w)| (f64::from(g) - w).abs()).fold(0f64, f64::max);
            let e_grad = got_grad.iter().zip(&want.1).map(|(&g, w)| (f64::from(g) - w).abs()).fold(0f64, f64::max);
            assert!(e_loss < 2e-6 && e_grad < 1e-6, "{name}: loss {e_loss:.2e}, gradient {e_grad:.2e} off f64");
        }
        let plain = cross_entropy_rows(Tensor::<Cpu, 2>::from_data(TensorData::new(logits.clone(), [rows, n]), &dev), &targets);
        for (g, w) in plain.into_data().to_vec::<f32>().unwrap().iter().zip(&want.0) {
            assert!((f64::from(*g) - w).abs() < 2e-6);
        }
    }

    /// The fast erf stays within 6e-7 of libm's exact `erff` over [-6, 6] (measured 5.07e-7).
    /// The kernels run compiled for AVX2 where the CPU has it (`host::wide`): same results, bit
    /// for bit, as the same loops in the baseline build (this test's own code).
    #[test]
    fn wide_kernels_equal_the_baseline_loops_bit_for_bit() {
        use super::host;
        use burn_ndarray::NdArrayTensor;
        fn bits_of(v: &[f32]) -> Vec<u32> {
            v.iter().map(|v| v.to_bits()).collect()
        }
        let (logits, _, [rows, n]) = softmax_case();
        let dev = Default::default();
        let t = Tensor::<Cpu, 2>::from_data(TensorData::new(logits.clone(), [rows, n]), &dev);
        let probs = softmax(t.clone(), 1).into_data().to_vec::<f32>().unwrap();
        let gelus = gelu(t).into_data().to_vec::<f32>().unwrap();
        for (r, x) in logits.chunks(n).enumerate() {
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = x.iter().map(|&v| host::exp(v - max)).collect();
            let inv = 1.0 / e.iter().sum::<f32>();
            for (j, e) in e.iter().enumerate() {
                assert_eq!((e * inv).to_bits(), probs[r * n + j].to_bits(), "softmax row {r} column {j}");
            }
        }
        for (x, g) in logits.iter().zip(&gelus) {
            assert_eq!(host::gelu(*x).to_bits(), g.to_bits(), "gelu({x})");
        }

        let (rows, n) = (37, 384);
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        };
        let x: Vec<f32> = (0..rows * n).map(|_| rnd()).collect();
        let g: Vec<f32> = (0..rows * n).map(|_| rnd()).collect();
        let gamma: Vec<f32> = (0..n).map(|_| rnd()).collect();
        let beta: Vec<f32> = (0..n).map(|_| rnd()).collect();
        let nd = |v: &Vec<f32>| NdArrayTensor::from_data(TensorData::new(v.clone(), [rows, n]));
        let bits = |a: &NdArrayTensor| bits_of(&host::values(a));
        // Layer norm forward and backward, GELU's and softmax's backward on BERT-wide rows.
        let (out, normed, inv) = host::row_norm(&nd(&x), &gamma, Some(&beta), 1e-12, true);
        let mut want_o = vec![0f32; rows * n];
        let mut want_h = vec![0f32; rows * n];
        let mut want_r = vec![0f32; rows];
        for r in 0..rows {
            let xr = &x[r * n..(r + 1) * n];
            let mean = xr.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            let var = xr.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n as f64;
            want_r[r] = (1.0 / (var + f64::from(1e-12f32)).sqrt()) as f32;
            let mean = mean as f32;
            for j in 0..n {
                want_h[r * n + j] = (xr[j] - mean) * want_r[r];
                want_o[r * n + j] = want_h[r * n + j] * gamma[j] + beta[j];
            }
        }
        assert_eq!(bits_of(&inv), bits_of(&want_r), "inv");
        assert_eq!(bits(&normed), bits_of(&want_h), "normed");
        assert_eq!(bits(&out), bits_of(&want_o), "out");
        let grad = host::row_norm_grad(&normed, &inv, &gamma, &nd(&g), true);
        let mut want_g = vec![0f32; rows * n];
        for r in 0..rows {
            let (mut a, mut b) = (0f32, 0f32);
            for j in 0..n {
                a += g[r * n + j] * gamma[j];
                b += g[r * n + j] * gamma[j] * want_h[r * n + j];
            }
            let (a, b) = (a / n as f32, b / n as f32);
            for j in 0..n {
                want_g[r * n + j] = (g[r * n + j] * gamma[j] - a - want_h[r * n + j] * b) * want_r[r];
            }
        }
        assert_eq!(bits(&grad), bits_of(&want_g), "ln grad");
        let gd = host::zip(&nd(&x), &nd(&g), |x, g| g * host::gelu_derivative(x));
        let want: Vec<u32> = x.iter().zip(&g).map(|(&x, &g)| (g * host::gelu_derivative(x)).to_bits()).collect();
        assert_eq!(bits(&gd), want, "gelu grad");
        let p = host::softmax_rows(&nd(&x));
        let sg = host::softmax_grad_rows(&p, &nd(&g));
        let pv = host::values(&p).to_vec();
        let mut want = vec![0u32; rows * n];
        for r in 0..rows {
            let dot: f32 = (0..n).map(|j| pv[r * n + j] * g[r * n + j]).sum();
            for j in 0..n {
                want[r * n + j] = (pv[r * n + j] * (g[r * n + j] - dot)).to_bits();
            }
        }
        assert_eq!(bits(&sg), want, "softmax grad");
    }

    #[test]
    fn fast_exp_is_within_its_bound() {
        let exp = super::host::exp;
        let worst = (-870_000..=880_000)
            .map(|i| i as f32 * 1e-4)
            .map(|x| ((f64::from(exp(x)) - f64::from(x).exp()) / f64::from(x).exp()).abs())
            .fold(0f64, f64::max);
        assert!(worst < 2.5e-7, "exp off by a relative {worst:.2e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1e9), 0.0, "a masked attention score gets exactly no weight");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(1e9).is_finite() && exp(1e9) >= exp(88.0));
    }

    #[test]
    fn fast_erf_is_within_its_bound() {
        let worst = (-60_000..=60_000).map(|i| i as f32 * 1e-4).map(|x| (super::host::erf(x) - libm::erff(x)).abs()).fold(0f32, f32::max);
        assert!(worst < 6e-7, "erf off libm's by {worst:.2e}");
    }
}
