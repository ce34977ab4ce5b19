//! ONNX itself: element types (one table), float16 conversion (of values, and of whole models: `fp16`),
//! value-info and attribute builders, shared
//! by every stage that reads or writes ONNX protobuf.

use serde::{Deserialize, Serialize};
use tract_onnx::pb;

pub mod build;
pub mod fold;
pub mod fp16;

/// Element type of a model input or output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F64,
    F16,
    I64,
    I32,
    I8,
    U8,
    Bool,
}

/// The one table of ONNX element types: `TensorProto.DataType` code, short name, bytes per element (0 for
/// strings), and the `DType` fuseval generates and reads for it (`None`: recognised, not generated).
const ELEM_TYPES: &[(i32, &str, usize, Option<DType>)] = &[
    (1, "f32", 4, Some(DType::F32)),
    (2, "u8", 1, Some(DType::U8)),
    (3, "i8", 1, Some(DType::I8)),
    (4, "u16", 2, None),
    (5, "i16", 2, None),
    (6, "i32", 4, Some(DType::I32)),
    (7, "i64", 8, Some(DType::I64)),
    (8, "string", 0, None),
    (9, "bool", 1, Some(DType::Bool)),
    (10, "f16", 2, Some(DType::F16)),
    (11, "f64", 8, Some(DType::F64)),
    (12, "u32", 4, None),
    (13, "u64", 8, None),
    (16, "bf16", 2, None),
];

fn elem(elem_type: i32) -> Option<&'static (i32, &'static str, usize, Option<DType>)> {
    ELEM_TYPES.iter().find(|e| e.0 == elem_type)
}

impl DType {
    /// From an ONNX `TensorProto.DataType` code; `None` for types fuseval does not handle.
    pub fn from_onnx(elem_type: i32) -> Option<DType> {
        elem(elem_type)?.3
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        ELEM_TYPES.iter().find(|e| e.3 == Some(self)).map(|e| e.0).expect("every DType is in ELEM_TYPES")
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        elem_size(self.onnx_code())
    }

    /// Lowercase name, as serialised: `f32`, `f16`, ...
    pub fn name(self) -> &'static str {
        elem_name(self.onnx_code())
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16)
    }

    /// Inclusive value bounds of an integer type (bool: 0..=1; floats: i64 bounds).
    pub(crate) fn int_bounds(self) -> (i64, i64) {
        match self {
            DType::I32 => (i32::MIN as i64, i32::MAX as i64),
            DType::I8 => (i8::MIN as i64, i8::MAX as i64),
            DType::U8 => (0, u8::MAX as i64),
            DType::Bool => (0, 1),
            _ => (i64::MIN, i64::MAX),
        }
    }
}

/// Bytes per element of an ONNX element type (0 when unknown).
pub fn elem_size(elem_type: i32) -> usize {
    elem(elem_type).map_or(0, |e| e.2)
}

/// Short name of an ONNX element type.
pub fn elem_name(elem_type: i32) -> &'static str {
    elem(elem_type).map_or("?", |e| e.1)
}

/// A tensor value-info, with a fixed shape when `dims` is given.
pub fn value_info(name: &str, elem_type: i32, dims: Option<&[usize]>) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let shape = dims.map(|dims| pb::TensorShapeProto {
        dim: dims.iter().map(|&v| Dimension { value: Some(Value::DimValue(v as i64)), ..Default::default() }).collect(),
    });
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor { elem_type, shape })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// IEEE binary32 to binary16, round to nearest even (overflow to infinity, NaN stays NaN).
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let full = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let mut m = full >> shift;
        let rem = full & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        if rem > half || (rem == half && m & 1 == 1) {
            m += 1;
        }
        return sign | m as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
        h += 1; // may carry into the exponent, which is the correct rounding
    }
    sign | h as u16
}

/// IEEE binary16 to binary32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    if exp == 0 {
        let v = man as f32 * (1.0 / 16_777_216.0); // 2^-24
        if sign != 0 {
            -v
        } else {
            v
        }
    } else if exp == 0x1f {
        f32::from_bits(sign | 0x7f80_0000 | (man << 13))
    } else {
        f32::from_bits(sign | ((exp + 112) << 23) | (man << 13))
    }
}

pub fn a_f(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

pub fn a_i(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

pub fn a_s(name: &str, s: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn a_floats(name: &str, v: &[f32]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Floats as i32,
        floats: v.to_vec(),
        ..Default::default()
    }
}

pub fn a_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_agrees_with_itself() {
        for d in [DType::F32, DType::F64, DType::F16, DType::I64, DType::I32, DType::I8, DType::U8, DType::Bool] {
            assert_eq!(DType::from_onnx(d.onnx_code()), Some(d));
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{}\"", d.name()));
        }
        assert_eq!((DType::F16.size_bytes(), DType::I64.size_bytes(), DType::Bool.size_bytes()), (2, 8, 1));
        assert_eq!((elem_name(16), elem_size(16), DType::from_onnx(16)), ("bf16", 2, None));
        assert_eq!((elem_name(99), elem_size(99)), ("?", 0));
    }
}
