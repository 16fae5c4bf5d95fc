//! The changes of the vendored burn-ndarray (vendor/README.md): `matmul` reads transposed,
//! sliced and broadcast operands through strided views and multiplies f32 with the `gemm`
//! crate, and `reshape` keeps a standard-layout buffer instead of copying it. Each case is checked against a plain f64 reference, and the
//! shared buffers against copy-on-write mistakes.

use burn::backend::Autodiff;
use burn::tensor::{Distribution, Tensor, TensorData};
use burn_ndarray::NdArray;

type B = NdArray<f32>;
type AD = Autodiff<NdArray<f32>>;

fn random<const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

fn values<Bk: burn::tensor::backend::Backend, const D: usize>(t: &Tensor<Bk, D>) -> Vec<f32> {
    t.to_data().to_vec::<f32>().expect("f32 tensor")
}

/// `a @ b` for `[batch.., m, k]` × `[batch.., k, n]` with length-1 batch axes broadcast, in
/// f64 from row-major data.
fn reference(a: &[f32], a_shape: &[usize], b: &[f32], b_shape: &[usize]) -> (Vec<f64>, Vec<usize>) {
    let d = a_shape.len();
    let (m, k, n) = (a_shape[d - 2], a_shape[d - 1], b_shape[d - 1]);
    assert_eq!(k, b_shape[d - 2]);
    let batch: Vec<usize> = (0..d - 2).map(|i| a_shape[i].max(b_shape[i])).collect();
    let count: usize = batch.iter().product();
    let mut out = vec![0f64; count * m * n];
    for o in 0..count {
        // Batch coordinates of output matrix `o`, then each operand's matrix offset.
        let (mut rest, mut a_off, mut b_off) = (o, 0, 0);
        let (mut a_stride, mut b_stride) = (m * k, k * n);
        for i in (0..d - 2).rev() {
            let c = rest % batch[i];
            rest /= batch[i];
            if a_shape[i] > 1 {
                a_off += c * a_stride;
            }
            if b_shape[i] > 1 {
                b_off += c * b_stride;
            }
            a_stride *= a_shape[i];
            b_stride *= b_shape[i];
        }
        for i in 0..m {
            for j in 0..n {
                out[(o * m + i) * n + j] = (0..k).map(|p| a[a_off + i * k + p] as f64 * b[b_off + p * n + j] as f64).sum();
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    (out, shape)
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what}: element {i}: {g} vs {w}");
    }
}

/// Checks `a @ b` against the reference computed from the operands' logical values.
fn check<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>, what: &str) {
    let (want, shape) = reference(&values(&a), &a.dims(), &values(&b), &b.dims());
    let got = a.matmul(b);
    assert_eq!(got.dims().to_vec(), shape, "{what}: shape");
    assert_close(&values(&got), &want, what);
}

#[test]
fn matmul_of_standard_transposed_sliced_and_broadcast_operands_matches_the_reference() {
    check(random([2, 3, 5, 4]), random([2, 3, 4, 6]), "standard layout");
    // Transposed operands, as attention's kᵀ and every backward's Wᵀ are.
    check(random([2, 3, 4, 5]).swap_dims(2, 3), random([2, 3, 6, 4]).swap_dims(2, 3), "both transposed");
    check(random([7, 5]), random([6, 5]).transpose(), "2-d, right transposed");
    // Batch axes permuted (not just the matrix axes), then multiplied.
    check(random([3, 2, 5, 4]).swap_dims(0, 1), random([2, 3, 4, 6]), "batch axes swapped");
    // Slices: every other column / a window of rows of a larger tensor.
    check(random([2, 5, 9]).narrow(2, 3, 4), random([2, 6, 4]).narrow(1, 1, 4), "narrowed");
    // Broadcast batch axes on either side.
    check(random([1, 3, 5, 4]), random([2, 3, 4, 6]), "left broadcast");
    check(random([2, 3, 5, 4]), random([2, 1, 4, 6]).swap_dims(2, 3).swap_dims(2, 3), "right broadcast");
    check(random([2, 1, 5, 4]), random([1, 3, 4, 6]), "both broadcast");
    // Sizes past the sgemm kernels' register tiles and cache blocks, odd on every axis: one
    // matrix (split over the threads) and a batch (one matrix per thread).
    check(random([67, 300]), random([93, 300]).transpose(), "one larger matrix");
    check(random([3, 300, 45]).swap_dims(1, 2), random([3, 300, 71]), "a batch of larger matrices");
}

#[test]
fn reshape_of_non_contiguous_tensors_keeps_row_major_order() {
    let t = random([2, 3, 4]);
    let data = values(&t);
    // swap_dims(1, 2) then reshape: element [i, k, j] of the swapped tensor is t[i, j, k].
    let got = values(&t.clone().swap_dims(1, 2).reshape([2, 12]));
    for i in 0..2 {
        for k in 0..4 {
            for j in 0..3 {
                assert_eq!(got[i * 12 + k * 3 + j], data[i * 12 + j * 4 + k]);
            }
        }
    }
    // A narrowed (non-contiguous) tensor reshaped.
    let got = values(&t.clone().narrow(2, 1, 2).reshape([12]));
    let want: Vec<f32> = (0..6).flat_map(|r| [data[r * 4 + 1], data[r * 4 + 2]]).collect();
    assert_eq!(got, want);
}

#[test]
fn a_reshaped_tensor_shares_its_buffer_without_writes_leaking_through() {
    let t = Tensor::<B, 2>::from_data(TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [3, 4]), &Default::default());
    let before = values(&t);
    // The reshaped tensor shares t's buffer; in-place-capable ops on it must not write into t.
    let r = t.clone().reshape([2, 6]);
    let r = r.add_scalar(100.0).mul_scalar(2.0);
    assert_eq!(values(&t), before, "the original is unchanged");
    let want: Vec<f32> = before.iter().map(|v| (v + 100.0) * 2.0).collect();
    assert_eq!(values(&r), want);
    // And the other way round: ops on the original leave the reshaped view's values alone.
    let view = t.clone().reshape([12]);
    let _t2 = t.add_scalar(1.0);
    assert_eq!(values(&view), before);
}

#[test]
fn gradients_through_transposed_matmuls_match_the_reference() {
    // loss = Σ (a @ bᵀ) ⊙ w  ⇒  ∂a = w @ b,  ∂b = wᵀ @ a (burn's backward multiplies by
    // transposed operands, which the patched matmul reads as views).
    let device = Default::default();
    let (a, b, w) = (random([2, 5, 4]), random([2, 6, 4]), random([2, 5, 6]));
    let (av, bv, wv) = (values(&a), values(&b), values(&w));
    let a_ad = Tensor::<AD, 3>::from_data(a.to_data(), &device).require_grad();
    let b_ad = Tensor::<AD, 3>::from_data(b.to_data(), &device).require_grad();
    let w_ad = Tensor::<AD, 3>::from_data(w.to_data(), &device);
    let loss = (a_ad.clone().matmul(b_ad.clone().swap_dims(1, 2)) * w_ad).sum();
    let grads = loss.backward();
    let ga = values(&a_ad.grad(&grads).expect("a's gradient"));
    let gb = values(&b_ad.grad(&grads).expect("b's gradient"));
    let (want_a, _) = reference(&wv, &[2, 5, 6], &bv, &[2, 6, 4]);
    assert_close(&ga, &want_a, "∂a");
    // wᵀ as row-major data, for the reference.
    let wt: Vec<f32> =
        (0..2).flat_map(|i| (0..6).flat_map(move |j| (0..5).map(move |r| (i, j, r)))).map(|(i, j, r)| wv[(i * 5 + r) * 6 + j]).collect();
    let (want_b, _) = reference(&wt, &[2, 6, 5], &av, &[2, 5, 4]);
    assert_close(&gb, &want_b, "∂b");
}
