//! GGUF (v2/v3) reader and dequantizer to f32.
//!
//! Layout (ggml `docs/gguf.md`): little-endian `"GGUF"` magic, `u32` version, `u64` tensor
//! count, `u64` metadata count; metadata `(string key, u32 type, value)`; tensor infos
//! `(string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset)`; then the data
//! section at the next multiple of `general.alignment` (default 32), tensor offsets being
//! relative to it. Strings are `u64` length + UTF-8 bytes. Dimensions are ggml order
//! (`dims[0]` varies fastest), so a ggml `[ne0, ne1]` tensor is a row-major `[ne1, ne0]` array.
//!
//! Dequantization follows ggml's reference `dequantize_row_*` (ggml-quants.c) operation for
//! operation, so it is bit-identical to ggml and to the `gguf` Python package.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use super::weights::HostTensor;
use crate::TrainError;

const MAGIC: u32 = 0x4655_4747; // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT: u64 = 32;
/// Guards against absurd lengths in corrupt files (strings, arrays, counts).
const MAX_LEN: u64 = 1 << 31;
/// Super-block size of the k-quants.
const QK_K: usize = 256;

/// Errors reading a GGUF file; they convert into [`TrainError::Model`].
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a GGUF file (magic {magic:#010x})")]
    Magic { path: PathBuf, magic: u32 },
    #[error("{path}: unsupported GGUF version {version}")]
    Version { path: PathBuf, version: u32 },
    #[error("{path}: corrupt header: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    #[error("{path}: tensor {name} has ggml type {ty}, which this reader cannot dequantize")]
    UnsupportedType { path: PathBuf, name: String, ty: String },
    #[error("{path}: no tensor named {name}")]
    NoTensor { path: PathBuf, name: String },
    #[error("{path}: metadata key {key}: {msg}")]
    Metadata { path: PathBuf, key: String, msg: String },
}

impl From<GgufError> for TrainError {
    fn from(e: GgufError) -> Self {
        let path = match &e {
            GgufError::Io { path, .. }
            | GgufError::Magic { path, .. }
            | GgufError::Version { path, .. }
            | GgufError::Corrupt { path, .. }
            | GgufError::UnsupportedType { path, .. }
            | GgufError::NoTensor { path, .. }
            | GgufError::Metadata { path, .. } => path.display().to_string(),
        };
        let full = e.to_string();
        let msg = full.strip_prefix(&format!("{path}: ")).map(str::to_string).unwrap_or(full);
        TrainError::Model(path, msg)
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// Any integer type as `i128` (covers u64 and i64 losslessly).
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            GgufValue::U8(v) => v.into(),
            GgufValue::I8(v) => v.into(),
            GgufValue::U16(v) => v.into(),
            GgufValue::I16(v) => v.into(),
            GgufValue::U32(v) => v.into(),
            GgufValue::I32(v) => v.into(),
            GgufValue::U64(v) => v.into(),
            GgufValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any float or integer as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// ggml tensor types (`enum ggml_type`, ggml.h). Only the ones listed in
/// [`GgmlType::block`] can be dequantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    Bf16,
    /// Any other type id (other k-quants, i-quants, integer tensors, ...).
    Other(u32),
}

impl GgmlType {
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::Bf16,
            other => Self::Other(other),
        }
    }

    /// ggml's name of the type.
    pub fn name(self) -> String {
        match self {
            Self::F32 => "F32".into(),
            Self::F16 => "F16".into(),
            Self::Q4_0 => "Q4_0".into(),
            Self::Q4_1 => "Q4_1".into(),
            Self::Q5_0 => "Q5_0".into(),
            Self::Q5_1 => "Q5_1".into(),
            Self::Q8_0 => "Q8_0".into(),
            Self::Q4K => "Q4_K".into(),
            Self::Q5K => "Q5_K".into(),
            Self::Q6K => "Q6_K".into(),
            Self::Bf16 => "BF16".into(),
            Self::Other(id) => format!("type#{id}"),
        }
    }

    /// `(elements per block, bytes per block)` for the supported types.
    pub fn block(self) -> Option<(usize, usize)> {
        Some(match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::Bf16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (QK_K, 144),
            Self::Q5K => (QK_K, 176),
            Self::Q6K => (QK_K, 210),
            Self::Other(_) => return None,
        })
    }
}

/// One entry of the tensor-info table.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (row length).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    /// Row-major (PyTorch/numpy) shape: the ggml dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Bytes the tensor occupies, or None for unsupported types.
    pub fn n_bytes(&self) -> Option<usize> {
        let (blk, size) = self.ty.block()?;
        Some(self.n_elements() / blk * size)
    }
}

/// A parsed GGUF header; tensor data is read from the file on demand.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, GgufValue)>,
    index: BTreeMap<String, usize>,
    pub tensors: Vec<GgufTensorInfo>,
    tensor_index: BTreeMap<String, usize>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    file_len: u64,
}

struct Cursor<'a, R: Read> {
    r: &'a mut R,
    path: &'a Path,
    pos: u64,
}

impl<R: Read> Cursor<'_, R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|source| GgufError::Io { path: self.path.to_path_buf(), source })?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn len(&mut self, what: &str) -> Result<usize, GgufError> {
        let n = self.u64()?;
        if n > MAX_LEN {
            return Err(self.corrupt(format!("{what} length {n} is implausible")));
        }
        Ok(n as usize)
    }
    fn corrupt(&self, msg: String) -> GgufError {
        GgufError::Corrupt { path: self.path.to_path_buf(), msg: format!("{msg} (at byte {})", self.pos) }
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.len("string")?;
        let mut b = vec![0u8; n];
        self.r.read_exact(&mut b).map_err(|source| GgufError::Io { path: self.path.to_path_buf(), source })?;
        self.pos += n as u64;
        String::from_utf8(b).map_err(|e| self.corrupt(format!("string is not UTF-8: {e}")))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<GgufValue, GgufError> {
        Ok(match ty {
            0 => GgufValue::U8(self.bytes::<1>()?[0]),
            1 => GgufValue::I8(self.bytes::<1>()?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.bytes()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.bytes()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.bytes()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.bytes()?)),
            7 => match self.bytes::<1>()?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.corrupt(format!("bool byte {b}"))),
            },
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth > 8 {
                    return Err(self.corrupt("arrays nested too deeply".into()));
                }
                let elem = self.u32()?;
                let n = self.len("array")?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(elem, depth + 1)?);
                }
                GgufValue::Array(v)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.bytes()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.bytes()?)),
            t => return Err(self.corrupt(format!("unknown metadata value type {t}"))),
        })
    }
}

impl GgufFile {
    /// Parses the header, metadata and tensor infos of `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut c = Cursor { r: &mut r, path, pos: 0 };
        let magic = c.u32()?;
        if magic != MAGIC {
            return Err(GgufError::Magic { path: path.to_path_buf(), magic });
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version { path: path.to_path_buf(), version });
        }
        let n_tensors = c.len("tensor count")?;
        let n_kv = c.len("metadata count")?;
        let mut metadata = Vec::with_capacity(n_kv.min(1 << 16));
        let mut index = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let value = c.value(ty, 0)?;
            index.insert(key.clone(), metadata.len());
            metadata.push((key, value));
        }
        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16));
        let mut tensor_index = BTreeMap::new();
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()?;
            if n_dims > 4 {
                return Err(c.corrupt(format!("tensor {name} has {n_dims} dims")));
            }
            let dims = (0..n_dims).map(|_| c.u64()).collect::<Result<Vec<_>, _>>()?;
            let ty = GgmlType::from_id(c.u32()?);
            let offset = c.u64()?;
            tensor_index.insert(name.clone(), tensors.len());
            tensors.push(GgufTensorInfo { name, dims, ty, offset });
        }
        let header_end = c.pos;
        let mut out =
            Self { path: path.to_path_buf(), version, metadata, index, tensors, tensor_index, alignment: 0, data_offset: 0, file_len };
        let alignment = match out.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_int() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
                _ => return Err(out.meta_err("general.alignment", "must be a power-of-two integer")),
            },
        };
        out.alignment = alignment;
        out.data_offset = header_end.div_ceil(alignment) * alignment;
        for t in &out.tensors {
            if t.offset % alignment != 0 {
                return Err(GgufError::Corrupt {
                    path: path.to_path_buf(),
                    msg: format!("tensor {} offset {} is not aligned", t.name, t.offset),
                });
            }
            if let Some(n) = t.n_bytes() {
                if out.data_offset + t.offset + n as u64 > file_len {
                    return Err(GgufError::Corrupt {
                        path: path.to_path_buf(),
                        msg: format!("tensor {} runs past the end of the file", t.name),
                    });
                }
            }
        }
        Ok(out)
    }

    fn meta_err(&self, key: &str, msg: &str) -> GgufError {
        GgufError::Metadata { path: self.path.clone(), key: key.to_string(), msg: msg.to_string() }
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A required string.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get(key).ok_or_else(|| self.meta_err(key, "missing"))?.as_str().ok_or_else(|| self.meta_err(key, "not a string"))
    }

    /// A required non-negative integer.
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        let v = self.get(key).ok_or_else(|| self.meta_err(key, "missing"))?;
        match v.as_int() {
            Some(i) if i >= 0 => Ok(i as usize),
            _ => Err(self.meta_err(key, "not a non-negative integer")),
        }
    }

    /// A required number.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        self.get(key).ok_or_else(|| self.meta_err(key, "missing"))?.as_f64().ok_or_else(|| self.meta_err(key, "not a number"))
    }

    /// A required array of strings.
    pub fn get_strings(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let arr =
            self.get(key).ok_or_else(|| self.meta_err(key, "missing"))?.as_array().ok_or_else(|| self.meta_err(key, "not an array"))?;
        arr.iter().map(|v| v.as_str().ok_or_else(|| self.meta_err(key, "holds a non-string"))).collect()
    }

    /// A tensor's info by name.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<Vec<u8>, GgufError> {
        let info = self.tensor_info(name).ok_or_else(|| GgufError::NoTensor { path: self.path.clone(), name: name.to_string() })?;
        let n = info.n_bytes().ok_or_else(|| self.unsupported(info))?;
        let io = |source| GgufError::Io { path: self.path.clone(), source };
        let mut f = File::open(&self.path).map_err(io)?;
        f.seek(SeekFrom::Start(self.data_offset + info.offset)).map_err(io)?;
        let mut buf = vec![0u8; n];
        f.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }

    fn unsupported(&self, info: &GgufTensorInfo) -> GgufError {
        GgufError::UnsupportedType { path: self.path.clone(), name: info.name.clone(), ty: info.ty.name() }
    }

    /// A tensor dequantized to f32, with its row-major shape (ggml dims reversed).
    pub fn tensor_f32(&self, name: &str) -> Result<HostTensor, GgufError> {
        let info = self.tensor_info(name).ok_or_else(|| GgufError::NoTensor { path: self.path.clone(), name: name.to_string() })?;
        let (blk, _) = info.ty.block().ok_or_else(|| self.unsupported(info))?;
        if info.dims.first().is_some_and(|&d| !(d as usize).is_multiple_of(blk)) {
            return Err(GgufError::Corrupt {
                path: self.path.clone(),
                msg: format!("tensor {name}: row length not a multiple of the block size {blk}"),
            });
        }
        let bytes = self.tensor_bytes(name)?;
        let data = dequantize(info.ty, &bytes, info.n_elements()).ok_or_else(|| self.unsupported(info))?;
        Ok(HostTensor::new(info.shape(), data))
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantizes `n` elements of type `ty` from `bytes`; None for unsupported types.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    let (blk, size) = ty.block()?;
    debug_assert_eq!(bytes.len(), n / blk * size);
    let mut y = vec![0f32; n];
    let blocks = bytes.chunks_exact(size).zip(y.chunks_exact_mut(blk));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => blocks.for_each(|(b, y)| y[0] = half_at(b, 0)),
        GgmlType::Bf16 => blocks.for_each(|(b, y)| y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        // block_q4_0 { ggml_half d; uint8_t qs[16]; }: y[j] = ((qs[j] & 0xF) - 8) * d,
        // y[j + 16] = ((qs[j] >> 4) - 8) * d.
        GgmlType::Q4_0 => blocks.for_each(|(b, y)| {
            let d = half_at(b, 0);
            for j in 0..16 {
                let q = b[2 + j];
                y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
                y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
            }
        }),
        // block_q4_1 { ggml_half d; ggml_half m; uint8_t qs[16]; }: y = q * d + m.
        GgmlType::Q4_1 => blocks.for_each(|(b, y)| {
            let (d, m) = (half_at(b, 0), half_at(b, 2));
            for j in 0..16 {
                let q = b[4 + j];
                y[j] = (q & 0xF) as f32 * d + m;
                y[j + 16] = (q >> 4) as f32 * d + m;
            }
        }),
        // block_q5_0 { ggml_half d; uint8_t qh[4]; uint8_t qs[16]; }: the 5th bit of element j
        // is bit j of qh (u32), of element j + 16 bit j + 16; y = (q - 16) * d.
        GgmlType::Q5_0 => blocks.for_each(|(b, y)| {
            let d = half_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for j in 0..16 {
                let q = b[6 + j];
                let h0 = ((qh >> j) << 4) & 0x10;
                let h1 = (qh >> (j + 12)) & 0x10;
                y[j] = (((q & 0xF) as u32 | h0) as i32 - 16) as f32 * d;
                y[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
            }
        }),
        // block_q5_1 { ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[16]; }: y = q * d + m.
        GgmlType::Q5_1 => blocks.for_each(|(b, y)| {
            let (d, m) = (half_at(b, 0), half_at(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            for j in 0..16 {
                let q = b[8 + j];
                let h0 = ((qh >> j) << 4) & 0x10;
                let h1 = (qh >> (j + 12)) & 0x10;
                y[j] = ((q & 0xF) as u32 | h0) as f32 * d + m;
                y[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
            }
        }),
        // block_q8_0 { ggml_half d; int8_t qs[32]; }: y = qs * d.
        GgmlType::Q8_0 => blocks.for_each(|(b, y)| {
            let d = half_at(b, 0);
            for j in 0..32 {
                y[j] = (b[2 + j] as i8) as f32 * d;
            }
        }),
        // block_q4_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; }:
        // 8 sub-blocks of 32 with 6-bit scales/mins; y = d*sc * q - dmin*m.
        GgmlType::Q4K => blocks.for_each(|(b, y)| {
            let (d, min) = (half_at(b, 0), half_at(b, 2));
            let scales = &b[4..16];
            let qs = &b[16..144];
            for (k, j) in (0..QK_K).step_by(64).enumerate() {
                let is = 2 * k;
                let (sc1, m1) = scale_min_k4(is, scales);
                let (sc2, m2) = scale_min_k4(is + 1, scales);
                let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
                let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
                let q = &qs[32 * k..32 * k + 32];
                for l in 0..32 {
                    y[j + l] = d1 * (q[l] & 0xF) as f32 - m1;
                    y[j + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
                }
            }
        }),
        // block_q5_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32];
        // uint8_t qs[128]; }: as Q4_K with a 5th bit from qh (bit 2k / 2k+1 for pair k).
        GgmlType::Q5K => blocks.for_each(|(b, y)| {
            let (d, min) = (half_at(b, 0), half_at(b, 2));
            let scales = &b[4..16];
            let qh = &b[16..48];
            let qs = &b[48..176];
            for (k, j) in (0..QK_K).step_by(64).enumerate() {
                let is = 2 * k;
                let (sc1, m1) = scale_min_k4(is, scales);
                let (sc2, m2) = scale_min_k4(is + 1, scales);
                let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
                let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
                let (u1, u2) = (1u8 << (2 * k), 2u8 << (2 * k));
                let ql = &qs[32 * k..32 * k + 32];
                for l in 0..32 {
                    let lo = (ql[l] & 0xF) + if qh[l] & u1 != 0 { 16 } else { 0 };
                    let hi = (ql[l] >> 4) + if qh[l] & u2 != 0 { 16 } else { 0 };
                    y[j + l] = d1 * lo as f32 - m1;
                    y[j + 32 + l] = d2 * hi as f32 - m2;
                }
            }
        }),
        // block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }:
        // 6-bit values (4 low bits in ql, 2 high bits in qh) minus 32, times d * scale.
        GgmlType::Q6K => blocks.for_each(|(b, y)| {
            let d = half_at(b, 208);
            for half in 0..2 {
                let ql = &b[64 * half..64 * half + 64];
                let qh = &b[128 + 32 * half..128 + 32 * half + 32];
                let sc = &b[192 + 8 * half..192 + 8 * half + 8];
                let y = &mut y[128 * half..128 * half + 128];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                    y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                    y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                    y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                }
            }
        }),
        GgmlType::Other(_) => return None,
    }
    Some(y)
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K
/// super-block, packed in 12 bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_and_q8_0_blocks() {
        // d = 1.0 (f16 0x3C00); nibbles 0..15 -> -8..7.
        let mut b = vec![0x00, 0x3C];
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_eq!(y[0], -8.0);
        assert_eq!(y[15], 7.0);
        assert_eq!(y[16], 7.0);
        assert_eq!(y[31], -8.0);
        let mut b = vec![0x00, 0x38]; // d = 0.5
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let y = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_eq!(y[0], -8.0);
        assert_eq!(y[31], 7.5);
    }

    #[test]
    fn rejects_non_gguf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gguf");
        std::fs::write(&p, b"GGML\0\0\0\0").unwrap();
        let err: TrainError = GgufFile::open(&p).unwrap_err().into();
        assert!(matches!(err, TrainError::Model(_, ref m) if m.contains("not a GGUF")), "{err}");
    }
}
