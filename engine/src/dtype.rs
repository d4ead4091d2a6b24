//! Element types.

use serde::{Deserialize, Serialize};

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit float: the compute type.
    F32,
    /// 64-bit float: references and gradient checks (CPU).
    F64,
    /// bfloat16: the weights of Linear and Conv2d layers in bf16 inference (CPU GEMM operand; casts
    /// and copies work on it, arithmetic kernels reject it).
    BF16,
    /// 64-bit signed integer: token ids, indices.
    I64,
    /// 32-bit unsigned integer: ids.
    U32,
    /// Byte: masks.
    U8,
    /// Boolean mask, stored as one byte (0 or 1).
    Bool,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::BF16 => 2,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether the dtype is a float type (and so can carry gradients).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::BF16)
    }

    /// Lower-case name, as used in error messages and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::U32 => "u32",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Host-side data of one tensor, contiguous, in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// f32 values.
    F32(Vec<f32>),
    /// f64 values.
    F64(Vec<f64>),
    /// bf16 values.
    BF16(Vec<half::bf16>),
    /// i64 values.
    I64(Vec<i64>),
    /// u32 values.
    U32(Vec<u32>),
    /// u8 values.
    U8(Vec<u8>),
    /// Booleans stored as 0/1 bytes.
    Bool(Vec<u8>),
}

impl HostData {
    /// The dtype of the data.
    pub fn dtype(&self) -> DType {
        match self {
            HostData::F32(_) => DType::F32,
            HostData::F64(_) => DType::F64,
            HostData::BF16(_) => DType::BF16,
            HostData::I64(_) => DType::I64,
            HostData::U32(_) => DType::U32,
            HostData::U8(_) => DType::U8,
            HostData::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::F64(v) => v.len(),
            HostData::BF16(v) => v.len(),
            HostData::I64(v) => v.len(),
            HostData::U32(v) => v.len(),
            HostData::U8(v) | HostData::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every element converted to f64 (lossless for all but huge i64).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::F64(v) => v.clone(),
            HostData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            HostData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::U32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::U8(v) | HostData::Bool(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
}

/// A Rust scalar type that maps to a [`DType`].
pub trait Element: Copy + Send + Sync + 'static + std::fmt::Debug {
    /// The matching dtype.
    const DTYPE: DType;
    /// Wrap a vector as [`HostData`].
    fn into_host(v: Vec<Self>) -> HostData;
    /// Unwrap [`HostData`] of this type.
    fn from_host(h: HostData) -> Option<Vec<Self>>;
}

macro_rules! element {
    ($t:ty, $d:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn into_host(v: Vec<Self>) -> HostData {
                HostData::$d(v)
            }
            fn from_host(h: HostData) -> Option<Vec<Self>> {
                match h {
                    HostData::$d(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(half::bf16, BF16);
element!(i64, I64);
element!(u32, U32);
impl Element for u8 {
    const DTYPE: DType = DType::U8;
    fn into_host(v: Vec<Self>) -> HostData {
        HostData::U8(v)
    }
    fn from_host(h: HostData) -> Option<Vec<Self>> {
        match h {
            HostData::U8(v) | HostData::Bool(v) => Some(v),
            _ => None,
        }
    }
}
