//! Reading and writing f32 safetensors as plain `(shape, Vec<f32>)` pairs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::TrainError;

/// A host-side f32 array.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    pub fn to_tensor<B: Backend, const D: usize>(&self, device: &B::Device) -> Tensor<B, D> {
        Tensor::from_data(TensorData::new(self.data.clone(), self.shape.clone()), device)
    }

    pub fn from_tensor<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Self {
        let shape = t.dims().to_vec();
        let data = t.to_data().convert::<f32>().to_vec::<f32>().expect("f32 tensor data");
        Self { shape, data }
    }

    /// The transpose of a 2-D array.
    pub fn transposed(&self) -> Self {
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = vec![0f32; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        Self { shape: vec![c, r], data: out }
    }
}

/// Every f32 tensor of a safetensors file, by name.
/// Tensors of a safetensors file by name, and its metadata header.
pub type SafetensorsContents = (HashMap<String, HostTensor>, Option<HashMap<String, String>>);

pub fn read_safetensors(path: &Path) -> Result<SafetensorsContents, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::Model(path.display().to_string(), format!("reading: {e}")))?;
    let bad = |m: String| TrainError::Model(path.display().to_string(), m);
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            continue;
        }
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    Ok((out, meta.metadata().clone()))
}

/// Writes f32 tensors (sorted by name) with the given metadata, atomically (temp + rename).
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    metadata: Option<HashMap<String, String>>,
) -> Result<(), TrainError> {
    let bytes: BTreeMap<&String, Vec<u8>> =
        tensors.iter().map(|(k, t)| (k, t.data.iter().flat_map(|v| v.to_le_bytes()).collect())).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (k, t) in tensors {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), &bytes[k])
            .map_err(|e| TrainError::Weights { path: path.to_path_buf(), message: format!("tensor {k}: {e}") })?;
        views.push((k.clone(), view));
    }
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, metadata, &tmp).map_err(|e| TrainError::Weights { path: tmp.clone(), message: e.to_string() })?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Takes a named tensor out of a map, checking its shape.
pub fn take(map: &mut HashMap<String, HostTensor>, name: &str, shape: &[usize], file: &Path) -> Result<HostTensor, TrainError> {
    let t = map.remove(name).ok_or_else(|| TrainError::Model(file.display().to_string(), format!("tensor {name} is missing")))?;
    if t.shape != shape {
        return Err(TrainError::Model(file.display().to_string(), format!("tensor {name} has shape {:?}, expected {shape:?}", t.shape)));
    }
    Ok(t)
}
